"""No module of the package imports itself back, even through type checkers' imports."""

from __future__ import annotations

import grimp


def test_no_module_imports_itself_back() -> None:
    graph = grimp.build_graph(
        "beatsync", include_external_packages=False, exclude_type_checking_imports=False
    )
    circles = sorted(
        {
            tuple(sorted((module, imported)))
            for module in graph.modules
            for imported in graph.find_modules_directly_imported_by(module)
            if graph.find_shortest_chain(importer=imported, imported=module)
        }
    )
    assert circles == []


def test_the_engine_shows_its_pipeline_in_its_folders() -> None:
    graph = grimp.build_graph("beatsync", include_external_packages=False)
    top = {m for m in graph.find_children("beatsync.engine")}
    for stage in ("media", "alignment", "cut", "output"):
        assert f"beatsync.engine.{stage}" in top
    loose = {m.rsplit(".", 1)[1] for m in top} - {"media", "alignment", "cut", "output"}
    # Beside the stages: the shared types, the errors, the runs that drive the stages (the whole
    # run, the audio-first run and its nudge), their progress, and the jobs' memory setting.
    assert loose == {
        "errors",
        "mapping",
        "piece",
        "result",
        "pipeline",
        "audiofirst",
        "retrack",
        "progress",
        "memory",
    }
