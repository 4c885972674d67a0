from setuptools import find_packages, setup

setup(
    name="harl-hypermarl",
    version="0.1.0",
    description="Multi-agent RL (MAPPO, HAPPO, HASAC, ...) with interchangeable per-agent architectures incl. HyperMARL",
    packages=find_packages(include=["harl", "harl.*", "hypermarl_ext", "hypermarl_ext.*"]),
    package_data={"harl": ["configs/*/*.yaml"]},
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.1,<3",
        "numpy>=1.24",
        "gymnasium>=1.0",
        "gymnasium-robotics>=1.4",
        "mujoco>=3.0",
        "pettingzoo>=1.24",
        "tensorboard>=2.14",
        "pyyaml>=6.0",
        "tqdm>=4.60",
    ],
    extras_require={
        "dev": ["pytest>=7", "pytest-xdist>=3", "ruff>=0.4"],
    },
    entry_points={"harl.extensions": []},
)
