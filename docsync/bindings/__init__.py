"""Document bindings: how the server reads, changes and writes documents."""

from .base import BaseBinding, BindingRegistry, get_binding_registry

__all__ = ["BaseBinding", "BindingRegistry", "get_binding_registry"]
