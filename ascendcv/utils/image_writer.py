"""Background PNG writing: a bounded queue drained by worker threads.

Typical use while running inference on a video::

    with QueuedImageWriter(num_workers=2, max_queue=16) as writer:
        for i, frame in enumerate(restored_frames):      # uint8 HxWx3
            writer.put(os.path.join(out_dir, f'{i:08d}.png'), frame)
    print(writer.written, 'frames written')

* ``put`` copies the frame and returns at once unless ``max_queue`` frames are
  already waiting; then it blocks, which bounds memory use when the disk is
  slower than the model.
* Leaving the ``with`` block, or calling :meth:`QueuedImageWriter.close`
  (e.g. in a ``finally``), waits until every queued frame is on disk -- also
  when the block is left by ``KeyboardInterrupt`` -- so no queued frame is
  lost.  Each file is written atomically by
  :func:`ascendcv.utils.video_io.write_png`, so a file that exists is complete.
* A failed write does not stop the workers (the other frames are still
  written) and never blocks the producer: from then on ``put`` raises
  :class:`ImageWriteError` at once, and ``close`` raises it as well.  The error
  names the file and chains the original exception.

The worker threads are daemons: a program that exits without calling
``close`` does not hang, but frames still queued at that point are lost.
"""
import os
import queue
import threading

import numpy as np

from ascendcv.utils.video_io import _as_image, write_png

__all__ = ['ImageWriteError', 'QueuedImageWriter']

DRAIN_MESSAGE = 'Writing images to files. This may take some time...'

_STOP = object()  # sentinel telling a worker thread to exit
_POLL_SECONDS = 0.05  # how often a blocked put() checks for worker errors


class ImageWriteError(OSError):
    """A background write failed.  ``path`` is the file, ``__cause__`` the original error."""

    def __init__(self, message, path):
        super().__init__(message)
        self.path = path


class QueuedImageWriter:
    """Write PNG files from worker threads fed by a bounded queue.

    Args:
        num_workers: number of writer threads (PNG encoding releases the GIL
            in zlib, so 2-4 threads help on large frames).
        max_queue: maximum number of frames waiting in the queue; ``put``
            blocks while the queue is full.
        compress_level: zlib level passed to :func:`write_png` (0-9).

    Attributes:
        written: number of files written successfully so far.
        failed: number of files that could not be written.
    """

    def __init__(self, num_workers=2, max_queue=16, compress_level=1):
        for name, value in (('num_workers', num_workers), ('max_queue', max_queue)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f'{name} must be an int >= 1, got {value!r}')
        self.num_workers = num_workers
        self.max_queue = max_queue
        self.compress_level = compress_level
        self._queue = queue.Queue(maxsize=max_queue)
        self._lock = threading.Lock()
        self._written = 0
        self._failed = 0
        self._first_error = None   # (path, exception) of the first failed write
        self._closing = False      # no more put() accepted
        self._closed = False       # all workers joined
        self._stops_sent = 0
        self._announced = False
        self._threads = [threading.Thread(target=self._work, name=f'QueuedImageWriter-{i}',
                                          daemon=True)
                         for i in range(num_workers)]
        for thread in self._threads:
            thread.start()

    # ------------------------------------------------------------------ state

    @property
    def written(self):
        """Number of files written successfully so far."""
        return self._written

    @property
    def failed(self):
        """Number of files whose write failed."""
        return self._failed

    @property
    def pending(self):
        """Frames queued or being written right now."""
        with self._queue.mutex:
            return self._queue.unfinished_tasks

    # ------------------------------------------------------------------ producer side

    def put(self, path, image):
        """Queue ``image`` (``uint8`` ``HxWx3`` or ``HxW``) to be written to ``path`` (.png).

        The image is copied, so the caller may reuse its buffer.  Blocks while
        the queue is full.

        Raises:
            ImageWriteError: an earlier write failed (raised immediately, also
                while blocked on a full queue).
            RuntimeError: the writer is closed.
            TypeError / ValueError: bad image dtype/shape or a non-``.png`` path.
        """
        self._raise_if_failed()
        if self._closing:
            raise RuntimeError('QueuedImageWriter is closed; no more images can be queued')
        path = os.fspath(path)
        if os.path.splitext(path)[1].lower() != '.png':
            raise ValueError(f'QueuedImageWriter writes PNG files; got {path!r}')
        item = (path, np.array(_as_image(image), copy=True))
        while True:
            try:
                self._queue.put(item, timeout=_POLL_SECONDS)
                return
            except queue.Full:
                self._raise_if_failed()  # never wait forever behind a failing writer

    def close(self):
        """Write everything still queued, stop the workers and report failures.

        Prints ``Writing images to files. This may take some time...`` when
        frames are still waiting at this point.  Safe to call more than once
        (e.g. again after a ``KeyboardInterrupt`` cut the first call short).

        Raises:
            ImageWriteError: some write failed (the first failure is reported,
                with the number of failures).
        """
        if not self._closed:
            self._closing = True
            if self.pending and not self._announced:
                self._announced = True
                print(DRAIN_MESSAGE, flush=True)
            while self._stops_sent < len(self._threads):
                self._queue.put(_STOP)  # cannot block forever: workers always drain
                self._stops_sent += 1
            for thread in self._threads:
                thread.join()
            self._closed = True
        self._raise_if_failed()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None:
            self.close()
            return False
        # The block failed (or was interrupted): still drain the queue, but let
        # the original exception propagate; a write error becomes a note on it.
        try:
            self.close()
        except Exception as close_exc:  # pragma: no branch
            if hasattr(exc, 'add_note'):
                exc.add_note(f'QueuedImageWriter.close() also failed: {close_exc}')
        return False

    # ------------------------------------------------------------------ worker side

    def _work(self):
        while True:
            item = self._queue.get()
            try:
                if item is _STOP:
                    return
                path, image = item
                try:
                    write_png(path, image, compress_level=self.compress_level)
                except Exception as exc:  # keep draining; report from put()/close()
                    with self._lock:
                        self._failed += 1
                        if self._first_error is None:
                            self._first_error = (path, exc)
                else:
                    with self._lock:
                        self._written += 1
            finally:
                self._queue.task_done()

    def _raise_if_failed(self):
        with self._lock:
            if self._first_error is None:
                return
            path, exc = self._first_error
            failed = self._failed
        more = f' ({failed} images failed in total)' if failed > 1 else ''
        reason = str(exc) if path in str(exc) else f'{path!r}: {exc}'  # write_png names the path
        raise ImageWriteError(f'Background image write failed: {reason}{more}', path) from exc
