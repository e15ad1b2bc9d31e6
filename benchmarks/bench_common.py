"""What the benchmarks share: peak memory, timed calls, one case per subprocess, JSON out.

Every benchmark prints one JSON document (and writes it to ``--out`` when given). A case that
measures memory runs in a fresh subprocess so its peak RSS (``VmHWM``) is its own.
"""
import json
import os
import resource
import subprocess
import sys
import time


def peak_rss_mb():
    """Peak resident memory of this process so far (``VmHWM``), MiB."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) / 1024.0
    return float('nan')


def timed_calls(fn, repeats):
    """Call ``fn()`` ``repeats`` times; returns ``(wall seconds, CPU seconds)`` lists (CPU = user +
    system of this process, the work itself on a shared machine)."""
    walls, cpus = [], []
    for _ in range(max(int(repeats), 1)):
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        fn()
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        walls.append(time.perf_counter() - t0)
        cpus.append(r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime)
    return walls, cpus


def run_child(script, args, env=None):
    """Run ``python script *args`` in a fresh process; its last stdout line is a JSON dict, which
    is returned (``{'error': [last stderr line]}`` when the child fails)."""
    proc = subprocess.run([sys.executable, os.path.abspath(script), *map(str, args)],
                          capture_output=True, text=True, env=env)
    if proc.returncode:
        return dict(error=proc.stderr.strip().splitlines()[-3:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def random_measurement(rng, hw, frames=8):
    """A random binary mask ``[hw, hw, frames]`` and the measurement ``[1, hw, hw]`` of random
    frames through it (float32), for SCI speed runs."""
    import numpy as np
    mask = (rng.random((hw, hw, frames)) < 0.5).astype(np.float32)
    meas = np.einsum('nhwb,hwb->nhw', rng.random((1, hw, hw, frames), dtype=np.float32), mask)
    return meas, mask


def emit(report, out=''):
    """Print ``report`` as JSON and, with ``out``, write it there (temporary name, then rename)."""
    text = json.dumps(report, indent=2)
    print(text)
    if out:
        tmp = f'{out}.tmp-{os.getpid()}'
        with open(tmp, 'w') as f:
            f.write(text + '\n')
        os.replace(tmp, out)
    return report
