"""selax: learning image representations and labels together by clustering with optimal transport."""

import os

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def requirements() -> list[str]:
    with open(os.path.join(HERE, "requirements.txt")) as f:
        return [line.strip() for line in f if line.strip() and not line.startswith("#")]


setup(
    name="selax",
    version="0.1.0",
    description="SeLa, Suave and Daino in JAX/Flax: clustering with optimal transport, (semi-)supervised.",
    long_description=open(os.path.join(HERE, "README.md")).read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["selax", "selax.*"]),
    install_requires=requirements(),
    extras_require={
        # The test runner (spread over 2 processes), and what it needs to execute the notebooks in experiments/.
        "test": [
            "pytest>=8,<10",
            "pytest-xdist>=3.6,<4",
            "nbclient>=0.10,<0.11",
            "nbformat>=5.10,<6",
            "ipykernel>=6.29,<8",
        ],
        # Preparing official tfds datasets (cifar100, imagenet2012, imagenet2012_subset) needs TensorFlow.
        "tf": ["tensorflow>=2.16,<3"],
        # Converting PyTorch checkpoints (selax.models.convert) both ways and the PyTorch equivalence tests.
        # 2.13.0 is the CPU build this project is tested with; safetensors reads and writes without torch.
        "convert": ["torch==2.13.0", "safetensors>=0.4,<1"],
        # The peers the benchmarks compare against.
        "bench": ["ott-jax>=0.6,<0.7", "pot>=0.9.5,<0.10", "torch==2.13.0", "psutil>=5.9"],
    },
)
