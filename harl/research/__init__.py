"""Research instruments behind the study scripts: plots and IQM tables (`harl-plot`), the matrix-game study,
policy diversity of saved checkpoints, parameter scaling and the HyperMARL-vs-sequential comparison.

Each module has a `main(argv)` and a `cli` (its guarded entry point, exit status 2 on bad input);
`examples/<script>.py` and the console scripts call them. Plotting needs the `research` extra.
"""
