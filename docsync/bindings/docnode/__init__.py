"""DocNode binding: the ``@docukit/docnode`` document format and apply step.

``DocNodeBinding`` is the public entry point; ``jsformat`` holds JavaScript's
JSON formatting, ``schema`` the node definitions, ``model`` the tree and its
snapshot form, ``apply`` the ``applyOperations`` semantics.
"""

from .binding import DocNodeBinding
from .model import DocNodeDoc

__all__ = ["DocNodeBinding", "DocNodeDoc"]
