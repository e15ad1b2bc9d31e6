"""SCI works offline on a fresh clone: the public benchmarks and the official training masks
ship in data/sci/, the SCI configs point at them, and GAP-TV evaluates them through the CLI."""
import json
import os
import sys

import pytest

from ascendcv.dataloader.sci import SciBenchmarkDataset, SciDataError, load_mask
from ascendvsr.config import load_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_bundled_benchmarks_and_masks_are_what_the_configs_read(monkeypatch):
    monkeypatch.chdir(ROOT)
    for name in ('gap_tv', 'revsci_small', 'revsci'):
        cfg = load_config(os.path.join('configs', f'{name}.yaml'))
        dataset = SciBenchmarkDataset.from_config(cfg)
        assert [os.path.basename(f) for f in dataset.files] == [
            'traffic48_cacti.mat', 'runner40_cacti.mat', 'drop40_cacti.mat'], name
        if cfg.sci.mask_file:
            assert load_mask(cfg.sci.mask_file, cfg.sci.mask_key).shape == (256, 256, 8), name


def test_gap_tv_evaluates_offline_through_the_cli(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(ROOT)
    sys.path.insert(0, os.path.join(ROOT, 'tools'))
    from main import main
    code = main(['--config-file', 'configs/gap_tv.yaml', '--mode', 'eval',
                 f'output_dir={tmp_path}', "sci.datasets=['drop40']"])
    assert code == 0, capsys.readouterr().err
    report = json.load(open(tmp_path / 'eval' / 'sci_report.json'))
    assert report['datasets']['drop40']['psnr'] > 34.5  # published: 34.63 dB
    assert os.path.isfile(report['datasets']['drop40']['grid'])


def test_missing_sci_data_names_the_command_that_restores_it(tmp_path):
    with pytest.raises(SciDataError, match=r'scripts/get_sci_data\.sh'):
        SciBenchmarkDataset(str(tmp_path / 'nowhere'))
    with pytest.raises(SciDataError, match=r'scripts/get_sci_data\.sh'):
        load_mask(str(tmp_path / 'mask.mat'))
