"""DocNode binding: the ``@docukit/docnode`` document format and apply step.

``DocNodeBinding`` is the public entry point. Inside: ``jsformat`` is
JavaScript's JSON (parse, stringify, key order), ``schema`` the node
definitions, ``model`` the tree and its snapshot form, ``apply`` and
``patch`` the ``applyOperations`` semantics, ``validate`` the shape checks
on incoming operations, ``errors`` the failures between them.
"""

from .binding import DocNodeBinding
from .errors import RollbackFailed
from .model import DocNodeDoc

__all__ = ["DocNodeBinding", "DocNodeDoc", "RollbackFailed"]
