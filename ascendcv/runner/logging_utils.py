"""One logger for the toolkit: console + ``output_dir/<log_file>``, timestamped lines."""
import logging
import os
import sys

FORMAT = '%(asctime)s %(message)s'
DATEFMT = '%Y-%m-%d %H:%M:%S'


def get_logger(output_dir=None, log_file='log.txt', name='ascendvsr', console=True):
    """The ``ascendvsr`` logger writing ``YYYY-MM-DD HH:MM:SS message`` lines.

    Handlers are replaced on each call so a second run in the same process logs to its own file.
    """
    log = logging.getLogger(name)
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()
    fmt = logging.Formatter(FORMAT, DATEFMT)
    if console:
        h = logging.StreamHandler(sys.stdout)
        h.setFormatter(fmt)
        log.addHandler(h)
    if output_dir and log_file:
        path = os.path.join(output_dir, log_file)
        try:
            os.makedirs(output_dir, exist_ok=True)
            fh = logging.FileHandler(path)
        except OSError as err:
            raise OSError(f'cannot write the log file {path}: {err.strerror or err} (output_dir '
                          f'must be a writable folder; or set log_file "" for console only)'
                          ) from None
        fh.setFormatter(fmt)
        log.addHandler(fh)
    log.setLevel(logging.INFO)
    log.propagate = False
    return log
