from setuptools import find_packages, setup

setup(
    name="harl-hypermarl",
    version="0.1.0",
    description="Multi-agent RL (MAPPO, HAPPO, HASAC, ...) with swappable per-agent architectures incl. HyperMARL",
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
        # Research instruments (examples/plot.py, param_scaling.py: IQM/bootstrap CIs, plots; test references).
        # rliable's `arch` dependency breaks on pandas 3.
        "research": ["rliable>=1.0", "matplotlib>=3.7", "pandas>=1.5,<3", "scipy>=1.10"],
        # examples/sweep.py --backend ray (a local Ray instance or a cluster).
        "cluster": ["ray>=2.9"],
        # --env smacv2 (JaxMARL SMAX, JAX on the CPU; jaxmarl pins gymnasium<1.4, which MaMuJoCo accepts).
        "smax": ["jaxmarl>=0.2,<0.3", "jax>=0.10.2,<0.11"],
        # --env vmas (VMAS Dispersion / Navigation; uses the installed torch).
        "vmas": ["vmas>=1.5,<1.6"],
        # --env mpe (PettingZoo MPE, moved to the mpe2 package).
        "mpe": ["mpe2>=1.1,<1.2"],
    },
    entry_points={"harl.extensions": ["hypermarl = hypermarl_ext"]},
)
