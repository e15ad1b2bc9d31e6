"""Tasks: what ``train``/``eval``/``inference`` mean for a family of models.

A task is an object with

* ``train_pipeline(cfg, model, backend) -> pipeline_fn(start_step) -> tf.data.Dataset`` of
  ``(inputs, target)`` batches, deterministic in the global step (resume-safe);
* ``evaluate(cfg, model, logger) -> dict`` (prints per-item lines, writes the JSON report);
* ``infer(cfg, model, logger)`` (restores inputs without ground truth, writes outputs);
* optionally ``example_input(cfg, model) -> np.ndarray`` for export checks.

``tools/main.py`` looks the task up by ``cfg.model.name``, so adding a model family means one task
module registered here -- no edits to the runner.
"""

_TASKS = {}


def register_task(model_name, task):
    if model_name in _TASKS:
        raise KeyError(f'a task is already registered for {model_name!r}')
    _TASKS[model_name] = task


def get_task(model_name):
    _load_builtin()
    if model_name not in _TASKS:
        raise KeyError(f"no task registered for model.name={model_name!r}; known: {sorted(_TASKS)}")
    return _TASKS[model_name]


def _load_builtin():
    if not _TASKS:
        from ascendvsr.tasks import vsr  # noqa: F401
        from ascendvsr.tasks import nerv  # noqa: F401
        from ascendvsr.tasks import sci  # noqa: F401
