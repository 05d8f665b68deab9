"""The plugin boundary: the bridge contributes the detector stages' settings, their defaults and
their flags through the ``jaxloss.stages`` entry point; jaxloss never imports the bridge or torch,
and works without it. The ``SearchedLoss`` config line has one builder."""

from __future__ import annotations

import ast
import dataclasses
import json
import subprocess
import sys
from importlib.metadata import entry_points

from jaxloss.search.settings import SearchSettings, Settings, setting_names, validate
from tests.processes import ROOT, python_env

SAVED_KEYS = [
    "branch", "population", "generations", "parents", "top_k", "verify_k", "p_crossover",
    "p_mutation", "tournament_size", "seed", "initial", "strategy", "capacity", "property_checks",
    "simulation", "detector", "verify", "archive_size", "final_k", "final_seeds",
    "tune_constants", "tune_generations", "out", "detector_config", "data", "images",
    "verify_iters", "verify_min_images", "proxy_epochs", "proxy_val", "batch_size", "executor",
    "workers", "gpus_per_training", "ray_address", "train_timeout", "explode_factor",
    "detector_task", "proxy_seeds"]
"""The keys of a run's settings.json (and report.json's settings), in their order: runs saved
before the plugin contributed its settings resume, and a report of the same seed is the same."""


def test_the_entry_point_is_the_bridges_plugin_and_its_settings_are_the_searchs():
    from bridge.search_stages import DetectorSettings, detector_stages
    from jaxloss.search.settings import DETECTOR_PLUGIN, DETECTOR_PLUGIN_ERROR

    (found,) = [ep for ep in entry_points(group="jaxloss.stages") if ep.name == "detector"]
    assert found.load() is detector_stages is DETECTOR_PLUGIN, DETECTOR_PLUGIN_ERROR
    assert detector_stages.settings_class is DetectorSettings
    # each default stated once, in the bridge; the search's Settings has them after its own
    own = [f.name for f in dataclasses.fields(SearchSettings)]
    plugin = [f.name for f in dataclasses.fields(DetectorSettings)]
    assert [f.name for f in dataclasses.fields(Settings)] == own + plugin
    defaults = Settings()
    for f in dataclasses.fields(DetectorSettings):
        assert getattr(defaults, f.name) == f.default, f.name
    assert setting_names() == frozenset(own + plugin) - {"extra"}
    assert list(validate(Settings()).to_json()) == SAVED_KEYS
    assert list(validate(Settings(detector=False)).to_json()) == SAVED_KEYS


def test_the_detector_flags_come_from_the_plugin_with_its_defaults():
    from bridge.search_stages import DetectorSettings
    from bridge.search_stages.settings import TITLE
    from jaxloss.search.cli import build_parser, settings_from_args

    parser = build_parser()
    (group,) = [g for g in parser._action_groups if g.title == TITLE]
    dests = {a.dest for a in group._group_actions}
    # every detector setting has its flag, but the training function (config files and tests)
    assert dests == {f.name for f in dataclasses.fields(DetectorSettings)} - {"detector_task"}
    assert all(a.default is None for a in group._group_actions)  # left out: the setting's default
    help_text = " ".join(parser.format_help().split())
    assert "(default 40)" in help_text and "default 3 with the detector stages, 5 without" in \
        help_text and "faster-rcnn_r18-tiny for cls, fcos_r18-tiny for cls_binary and reg" in \
        help_text
    s = settings_from_args(parser.parse_args(["--verify-iters", "7", "--executor", "ray",
                                              "--train-timeout", "9"]))
    assert (s.verify_iters, s.executor, s.train_timeout, s.proxy_epochs) == (7, "ray", 9.0, 1)


def test_a_settings_file_and_a_saved_run_hold_the_detector_settings(tmp_path):
    from jaxloss.search.cli import stored_settings
    from jaxloss.search.settings import load_config

    path = tmp_path / "search.toml"
    path.write_text("population = 50\nverify_iters = 6\nworkers = 1\n")
    s = validate(Settings(**load_config(path)))
    assert (s.population, s.verify_iters, s.workers) == (50, 6, 1)
    saved = tmp_path / "settings.json"
    saved.write_text(json.dumps(s.to_json(), indent=2))
    assert stored_settings(saved) == s


def test_without_the_plugin_the_search_runs_without_detector_stages_and_loads_no_bridge():
    """The entry point hidden: Settings is the search's own, the command line says how to get the
    detector stages, and --no-detector settings validate; nothing of bridge or torch is loaded
    (nor is with the plugin, by the command line)."""
    script = """
import importlib.metadata as md, json, sys
found = md.entry_points
if sys.argv[1] == "hidden":
    md.entry_points = lambda **kw: [] if kw.get("group") == "jaxloss.stages" else found(**kw)
from jaxloss.search import cli, settings
parser = cli.build_parser()
out = {"plugin": settings.DETECTOR_PLUGIN is not None,
       "fields": sorted(settings.setting_names()), "help": " ".join(parser.format_help().split())}
s = cli.settings_from_args(parser.parse_args(["--no-detector"]))
out["generations"] = s.generations
out["loaded"] = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "mmengine", "mmdet")
                       or m.startswith("bridge.search_stages."))
print(json.dumps(out))
"""
    runs = {}
    for mode in ("hidden", "installed"):
        done = subprocess.run([sys.executable, "-c", script, mode], capture_output=True,
                              text=True, env=python_env(), cwd=ROOT, timeout=600)
        assert done.returncode == 0, done.stderr
        runs[mode] = json.loads(done.stdout.splitlines()[-1])
    hidden, installed = runs["hidden"], runs["installed"]
    assert not hidden["plugin"] and installed["plugin"]
    assert "verify_iters" not in hidden["fields"] and "verify_iters" in installed["fields"]
    assert "the detector stages are not installed" in hidden["help"]
    assert "--verify-iters" not in hidden["help"] and "--verify-iters" in installed["help"]
    assert hidden["generations"] == installed["generations"] == 5
    assert hidden["loaded"] == []
    # with the plugin: its settings and flags only, not the stages, nor torch
    assert installed["loaded"] == ["bridge.search_stages.plugin", "bridge.search_stages.settings"]


def test_the_reports_config_line_is_what_the_bridge_puts_into_a_head():
    import jaxloss
    from bridge import config as configs
    from jaxloss.search.report import mmdet_line

    cases = {"fcos_r18-tiny": ("cls_binary", "-log(sigmoid(x))", "loss_cls"),
             "faster-rcnn_r18-tiny": ("cls", "-dot(y, log(softmax(x)))", "loss_cls")}
    for config, (branch, formula, slot) in cases.items():
        for loss_branch, text, set_loss in ((branch, formula, slot),
                                            ("reg", "1 - i/u", "loss_reg")):
            text = str(jaxloss.parse(text, loss_branch))  # as the report has it
            line = mmdet_line(text, loss_branch)
            key, _, value = line.partition("=")
            call = ast.parse(value, mode="eval").body
            from_line = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
            cfg = configs.load(config)
            configs.set_losses(cfg, **{set_loss: text})
            head, _ = configs.detection_heads(cfg.model)[0]
            in_head = dict(head[key])
            in_head.pop("use_sigmoid", None)  # what a one-stage head adds
            assert in_head == dict(from_line, loss_weight=in_head["loss_weight"]), (config, key)
            assert from_line["type"] == "SearchedLoss" and from_line["loss_weight"] == 1.0
