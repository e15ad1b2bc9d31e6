"""The yacs tree: defaults, YAML, both override styles, and errors that name the key."""
import os
import re

import pytest

from ascendvsr.config import ConfigError, load_config, parse_overrides
from ascendvsr.config.defaults import get_cfg_defaults

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_keys_users_of_the_original_know():
    cfg = get_cfg_defaults()
    assert cfg.output_dir == 'outputs/edvr'
    for key in ['device', 'solver.print_interval', 'solver.checkpoint_interval', 'data.num_threads',
                'data.train_data_queue_size', 'data.eval_batch_size', 'model.input_format_dimension',
                'model.convert_output_to_uint8', 'edvr.impl']:
        node = cfg
        for part in key.split('.'):
            node = node[part]
    assert cfg.edvr.impl == 'tf'


def test_every_key_has_a_comment():
    src = open(os.path.join(ROOT, 'ascendvsr', 'config', 'defaults.py')).read()
    lines = [l for l in src.splitlines() if re.match(r'^_C\.[\w.]+ = (?!CN\(\))', l)]
    assert len(lines) > 30
    missing = [l for l in lines if '#' not in l]
    assert not missing, missing


def test_yaml_files_load():
    m = load_config(os.path.join(ROOT, 'configs', 'edvr.yaml'))
    l = load_config(os.path.join(ROOT, 'configs', 'edvr_l.yaml'))
    assert (m.edvr.num_feat, m.edvr.num_reconstruct_block) == (64, 10)
    assert (l.edvr.num_feat, l.edvr.num_reconstruct_block) == (128, 40)
    assert l.output_dir == 'outputs/edvr_l'


def test_qat_config_starts_from_the_float_config_it_names():
    """``configs/qsci_small.yaml`` QATs from ``outputs/efficientsci_small``: the sizes must agree
    (``qsci.init_from`` refuses an EfficientSCI of another size)."""
    q = load_config(os.path.join(ROOT, 'configs', 'qsci_small.yaml'))
    f = load_config(os.path.join(ROOT, 'configs', 'efficientsci_small.yaml'))
    assert q.qsci.init_from.startswith(f.output_dir)
    sizes = lambda n: (n.in_ch, n.units, n.group_num, n.color_ch)  # noqa: E731
    assert sizes(q.qsci) == sizes(f.efficientsci)
    assert (q.sci.crop_size, q.sci.mask_file, q.sci.train_sources) == \
        (f.sci.crop_size, f.sci.mask_file, f.sci.train_sources)


def test_both_override_styles_and_types():
    cfg = load_config(None, ['solver.print_interval', '5', 'data.eval_batch_size=-1',
                             'model.convert_output_to_uint8=True', 'edvr.with_tsa', 'false',
                             'solver.lr=1e-3', 'output_dir', '/tmp/x', 'data.eval_in_size=[64,96]'])
    assert cfg.solver.print_interval == 5 and cfg.data.eval_batch_size == -1
    assert cfg.model.convert_output_to_uint8 is True and cfg.edvr.with_tsa is False
    assert cfg.solver.lr == 1e-3 and cfg.output_dir == '/tmp/x'
    assert list(cfg.data.eval_in_size) == [64, 96]
    assert parse_overrides(['a=b=c']) == [('a', 'b=c')]


def test_unknown_key_is_named_with_a_suggestion():
    with pytest.raises(ConfigError, match=r"unknown config key 'solver.print_intervall'.*did you mean 'solver.print_interval'"):
        load_config(None, ['solver.print_intervall', '3'])
    with pytest.raises(ConfigError, match="unknown config key 'nosuch.section.key'"):
        load_config(None, ['nosuch.section.key=1'])


def test_unknown_key_in_yaml_names_the_file(tmp_path):
    p = tmp_path / 'bad.yaml'
    p.write_text('edvr:\n  num_feet: 32\n')
    with pytest.raises(ConfigError, match=r"'edvr.num_feet' in .*bad.yaml.*did you mean 'edvr.num_feat'"):
        load_config(str(p))


def test_bad_values_and_missing_pieces(tmp_path):
    with pytest.raises(ConfigError, match="'edvr.num_feat' expects int"):
        load_config(None, ['edvr.num_feat', 'wide'])
    with pytest.raises(ConfigError, match="'edvr.hr_in' expects true/false"):
        load_config(None, ['edvr.hr_in=maybe'])
    with pytest.raises(ConfigError, match="'solver.lr' has no value"):
        load_config(None, ['solver.lr'])
    with pytest.raises(ConfigError, match='config file not found: .*none.yaml'):
        load_config(str(tmp_path / 'none.yaml'))


def test_frozen_config_cannot_be_mutated():
    cfg = load_config(None, [])
    with pytest.raises(AttributeError):
        cfg.output_dir = 'elsewhere'


@pytest.mark.parametrize('text,match', [
    ('solver:\n  lr: [1, 2\n', r'bad\.yaml: invalid YAML \(line 3'),
    ('solver: 5\n', r"bad\.yaml: 'solver' is a section of keys"),
    ('- a\n- b\n', r'bad\.yaml: the top level must be a mapping.*got a list'),
    ('solver:\n  lr:\n    x: 1\n', r"bad\.yaml: config key 'solver\.lr' takes a value"),
])
def test_broken_yaml_files_are_config_errors_naming_the_file(tmp_path, text, match):
    path = tmp_path / 'bad.yaml'
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(str(path))


@pytest.mark.parametrize('override,match', [
    ('data.eval_in_size=[36]', r'data\.eval_in_size must be two integers'),
    ('inference.num_writers=0', r'inference\.num_writers must be a positive integer'),
    ('solver.keep_checkpoints=0', r'solver\.keep_checkpoints must be a positive integer'),
    ('solver.print_interval=0', r'solver\.print_interval must be'),
    ('data.batch_size=0', r'data\.batch_size must be'),
    ('solver=5', r"'solver' names a section, not a key"),
])
def test_values_that_cannot_work_are_refused_at_load_time(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, [override])


def test_cli_blames_the_dangling_key_and_debug_shows_the_traceback(capsys):
    import sys
    sys.path.insert(0, os.path.join(ROOT, 'tools'))
    from main import main
    assert main(['--mode', 'train', 'solver.total_steps']) == 2
    err = capsys.readouterr().err
    assert "override 'solver.total_steps' has no value" in err and "'train'" not in err
    with pytest.raises(ConfigError):
        main(['--debug', '--mode', 'train', 'solver.total_steps', '0'])


def test_an_unwritable_log_file_is_one_line(tmp_path, capsys):
    import sys
    sys.path.insert(0, os.path.join(ROOT, 'tools'))
    from main import main
    (tmp_path / 'log.txt').mkdir()  # where the log file should go
    assert main(['--mode', 'train', f'output_dir={tmp_path}']) == 1
    err = capsys.readouterr().err
    assert err.startswith('Error: cannot write the log file') and str(tmp_path) in err
