# TEMP shim
from mis.train.trainer import TrainConfig, resolve_device  # noqa: F401
