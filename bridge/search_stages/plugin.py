"""The entry point jaxloss finds (``jaxloss.stages`` → ``detector``, see pyproject.toml):
:data:`detector_stages`, the detector plugin of ``python -m jaxloss.search``.

What jaxloss asks of it (``jaxloss.search.settings`` and ``jaxloss.search.stages``):

* ``settings_class`` — :class:`~bridge.search_stages.settings.DetectorSettings`: its fields, with
  their defaults, become settings of the search;
* ``validate(values)`` — a SettingsError for a bad value of those fields;
* ``title`` and ``add_arguments(group)`` — their flags, as one group of the command line;
* ``generations`` — the default number of generations of a search with these stages;
* calling it, ``detector_stages(settings=..., run_dir=..., log=...)`` — the stages of a search.

jaxloss loads this module while ``jaxloss.search.settings`` is itself being imported: the stages'
modules (which import ``jaxloss.search``) load only when it is called.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from bridge.search_stages import settings as detector_settings
from bridge.search_stages.settings import GENERATIONS, TITLE, DetectorSettings


class DetectorPlugin:
    """The detector stages of the search: their settings, their flags and the stages."""

    settings_class = DetectorSettings
    title = TITLE
    generations = GENERATIONS

    @staticmethod
    def add_arguments(group) -> None:
        """The flags of the detector settings, into an argparse group."""
        detector_settings.add_arguments(group)

    @staticmethod
    def validate(values: dict) -> None:
        """Raises SettingsError for a bad value of the detector settings (name → value)."""
        DetectorSettings(**values).validate()

    def __call__(self, settings: dict, run_dir, log) -> list:
        """[D_verify stage, proxy stage] for a search with these settings (a dict, as
        ``Settings.to_json()``); the proxy stage alone with ``verify`` off (an ablation).

        Checks the detector config, starts the executor and writes the data sets first, so that a
        bad setting stops the search before anything is trained.
        """
        from bridge.search_stages.cache import ResultCache
        from bridge.search_stages.data import prepare_search_data
        from bridge.search_stages.proxy import ProxyStage
        from bridge.search_stages.settings import DetectorSetup, check_detector_config
        from bridge.search_stages.training import make_executor
        from bridge.search_stages.verify import VerifyStage

        d = DetectorSetup.from_search(settings)
        check_detector_config(d)
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        executor = make_executor(d)  # before the data: GPUs that are not there stop the search
        log(f"detector trainings: {executor.describe()}")
        data = prepare_search_data(d, run_dir)
        log(f"detector data: {data.description}")
        (run_dir / "detector_settings.json").write_text(json.dumps(asdict(d), indent=2))
        cache = ResultCache(run_dir / "detector_results.jsonl")
        common = (d, data, run_dir, cache, executor, log)
        if settings.get("verify", True) is False:
            return [ProxyStage(*common)]
        return [VerifyStage(*common), ProxyStage(*common)]


detector_stages = DetectorPlugin()
"""The plugin object the ``jaxloss.stages`` entry point names."""
