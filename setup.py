"""Only the build step that puts the default model and policy, the local broker script and the
labelled examples in the wheel (moderator/bundled.py); everything else is in pyproject.toml.
Training, calibration and the tests keep them where they are, and a checkout reads them there; the
wheel carries a copy so that an installed package runs, scans and demos with no path set. A hook,
not package-data, because package-data takes files from inside a package directory only, and
moving the model into moderator/ would put its training scripts there."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
# (source, destination inside the package): the model's served files and its card, not its training scripts.
BUNDLE = [
    *(
        (p, Path("_bundled/model") / p.name)
        for p in sorted((HERE / "models/default").iterdir())
        if p.suffix in (".onnx", ".json", ".md") and p.name != "config.json"
    ),
    (HERE / "policies/default.yaml", Path("_bundled/policies/default.yaml")),
    (HERE / "deploy/local/kafka.sh", Path("_bundled/kafka.sh")),
    (HERE / "examples/labels.csv", Path("_bundled/examples/labels.csv")),
    *((p, Path("_bundled/examples/images") / p.name) for p in sorted((HERE / "examples/images").glob("*.jpg"))),
]


class BuildPyWithBundle(build_py):
    def run(self) -> None:
        super().run()
        for src, dest in BUNDLE:
            target = Path(self.build_lib) / "moderator" / dest
            target.parent.mkdir(parents=True, exist_ok=True)
            self.copy_file(str(src), str(target))


setup(cmdclass={"build_py": BuildPyWithBundle})
