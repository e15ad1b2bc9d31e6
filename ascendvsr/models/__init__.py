"""Models. Importing this package registers every model with the registry."""
from ascendvsr.models.registry import build_model, register, registered_models  # noqa: F401
from ascendvsr.models import edvr  # noqa: F401,E402
from ascendvsr.models import gap_tv  # noqa: F401,E402
from ascendvsr.models import nerv  # noqa: F401,E402
from ascendvsr.models import revsci  # noqa: F401,E402
