"""Device selection from ``device`` / ``device_id`` (the scripts pass ``DEVICE_ID``).

* ``auto`` (default): TensorFlow's choice (a GPU when one is visible, else the CPU);
* ``cpu``: the CPU only (GPUs hidden from TensorFlow);
* ``gpu``: GPU ``device_id`` (``CUDA_VISIBLE_DEVICES`` when it is not set already, else the
  ``device_id``-th visible GPU); with ``solver.distributed`` each rank picks its own GPU (Horovod:
  by local rank), so only the check that a GPU exists applies;
* ``npu``: the Ascend NPU through its TensorFlow 2 adapter (``npu_device``), opened on
  ``device_id``; a clear error where the adapter is not installed.

Call :func:`select_device` before TensorFlow creates its devices (first op).
"""
import os

DEVICES = ('auto', 'cpu', 'gpu', 'npu')


class DeviceError(RuntimeError):
    """The requested device is not available on this machine."""


def check_device(device, device_id):
    """``(device lower-cased, device_id)``; ValueError naming the key for a bad value."""
    name = str(device).strip().lower()
    if name not in DEVICES:
        raise ValueError(f"device must be one of {'|'.join(DEVICES)} (case-insensitive); got "
                         f"{device!r}")
    if isinstance(device_id, bool) or not isinstance(device_id, int) or device_id < 0:
        raise ValueError(f'device_id must be a non-negative integer; got {device_id!r}')
    return name, device_id


def select_device(cfg, logger=None):
    """Make TensorFlow run on ``cfg.device`` / ``cfg.device_id``; returns the device name."""
    name, index = check_device(cfg.device, cfg.device_id)
    distributed = str(cfg.solver.distributed).lower() != 'none'
    if name == 'cpu':
        os.environ['CUDA_VISIBLE_DEVICES'] = '-1'
    elif name == 'gpu' and not distributed and 'CUDA_VISIBLE_DEVICES' not in os.environ:
        os.environ['CUDA_VISIBLE_DEVICES'] = str(index)
        index = 0
    if name in ('auto', 'cpu'):
        return name
    import tensorflow as tf
    if name == 'gpu':
        gpus = tf.config.list_physical_devices('GPU')
        if not gpus:
            raise DeviceError(f'device=gpu (device_id {cfg.device_id}) but TensorFlow sees no GPU '
                              f'(CUDA_VISIBLE_DEVICES={os.environ.get("CUDA_VISIBLE_DEVICES")!r}; '
                              f'GPU use needs tensorflow[and-cuda]==2.21.0 instead of '
                              f'tensorflow-cpu); use device=cpu')
        if not distributed:
            if index >= len(gpus):
                raise DeviceError(f'device_id {cfg.device_id}: only {len(gpus)} GPU(s) visible')
            tf.config.set_visible_devices(gpus[index], 'GPU')
        return name
    try:
        import npu_device  # Ascend CANN TensorFlow 2 adapter
    except ImportError as err:
        raise DeviceError(f'device=npu needs the Ascend TensorFlow adapter (npu_device / '
                          f'npu_bridge from CANN), which is not importable here ({err}); use '
                          f'device=cpu or device=gpu') from err
    os.environ.setdefault('ASCEND_DEVICE_ID', str(index))
    npu_device.open().as_default()
    if logger is not None:
        logger(f'Running on NPU {index}')
    return name
