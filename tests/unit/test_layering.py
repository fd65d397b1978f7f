from pathlib import Path

from tests.layering import violations


def test_the_tree_keeps_its_layering() -> None:
    assert violations() == []


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_the_check_catches_each_forbidden_direction(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "pulltag/a.py": "import webhook.app\n",
            "pulltag/b.py": "def f():\n    from listener import informer\n",
            "webhook/c.py": "from listener.registry import oci\n",
            "listener/d.py": "import importlib\nimportlib.import_module('webhook.review')\n",
            "listener/ok.py": "from pulltag import config\nimport json\n",
        },
    )
    found = violations(root)
    assert found == [
        "pulltag/a.py:1: pulltag must not import webhook",
        "pulltag/b.py:2: pulltag must not import listener",
        "webhook/c.py:1: webhook must not import listener",
        "listener/d.py:2: listener must not import webhook",
    ]
