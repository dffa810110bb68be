"""The public surface: names users import, and nothing heavy at import time."""

import subprocess
import sys

import reelflow

EXPECTED = {
    "FlowSpec", "step", "Parameter", "JSONType", "IncludeFile", "current", "retry", "catch", "timeout",
    "resources", "environment", "card", "parallel", "Runner", "NBRunner", "Flow", "Run", "Step", "Task", "namespace", "get_namespace",
    "default_namespace", "ReelflowError", "models", "__version__", "schedule", "trigger", "trigger_on_finish",
    "events", "project", "namespaced_event_name", "pypi", "conda", "pypi_base", "conda_base", "checkpoint",
    "DataArtifact", "Metaflow", "get_metadata", "metadata", "default_metadata", "cards", "exception", "Config", "config_expr", "FlowMutator", "cache",
}


def test_all_names_exported():
    assert set(reelflow.__all__) == EXPECTED
    for name in reelflow.__all__:
        assert getattr(reelflow, name) is not None


def test_subpackages_export_what_they_declare():
    import reelflow.cards
    import reelflow.client
    import reelflow.events
    import reelflow.exception
    import reelflow.flows
    import reelflow.operate
    import reelflow.content.bandits
    import reelflow.content.experiments
    import reelflow.content.ope
    import reelflow.recs
    import reelflow.registry
    import reelflow.runtime
    import reelflow.store

    for mod in (reelflow.cards, reelflow.exception, reelflow.flows, reelflow.operate, reelflow.events, reelflow.client, reelflow.runtime, reelflow.store, reelflow.recs, reelflow.registry,
                reelflow.content.bandits, reelflow.content.ope, reelflow.content.experiments):
        for name in mod.__all__:
            assert hasattr(mod, name), f"{mod.__name__}.{name}"


def test_import_is_light():
    code = "import sys, reelflow; from reelflow import FlowSpec, step; print(sorted(m for m in ('sqlalchemy', 'numpy', 'click') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
