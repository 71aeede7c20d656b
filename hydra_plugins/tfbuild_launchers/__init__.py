"""tfbuild's Hydra plugins. Hydra finds plugins only in the `hydra_plugins` namespace package;
the work is tfbuild's (tfbuild/ray_launcher.py), imported when a plugin is used."""
