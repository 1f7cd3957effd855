"""Named architectures. Importing this package registers the built-in ones."""

from inkpack.models.registry import REGISTRY, ModelSpec, build_model, declare, register, spec_for

from inkpack.models import cnn_dblstm as _cnn_dblstm  # noqa: F401,E402  (registers)
from inkpack.models import gated as _gated  # noqa: F401,E402  (registers)

try:  # optional architectures register themselves when their module exists
    from inkpack.models import mdlstm as _mdlstm  # noqa: F401
except ImportError:  # pragma: no cover
    pass
try:
    from inkpack.models import online as _online  # noqa: F401
except ImportError:  # pragma: no cover
    pass

__all__ = ["REGISTRY", "ModelSpec", "build_model", "declare", "register", "spec_for"]
