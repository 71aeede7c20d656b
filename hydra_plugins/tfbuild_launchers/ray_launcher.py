"""`hydra/launcher=ray` for tfbuild: Hydra's Ray launcher with what a tfbuild job needs
(tfbuild/ray_launcher.py says what and why). Hydra imports this module whenever it starts, so
it imports neither Ray nor hydra-ray-launcher's code; they are the `ray` extra."""

# No `from __future__ import annotations`: Hydra runs this module before it is in sys.modules,
# where dataclasses would look its string annotations up.
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


@dataclass
class RayConf:
    # ray.init()'s arguments. address: null starts Ray on this machine; HOST:PORT (or auto)
    # joins a running cluster, whose nodes must all see the caller's folder (cache.dir).
    init: Dict[str, Any] = field(default_factory=lambda: {"address": None})
    # ray.remote()'s options for each job, e.g. {num_cpus: 2, num_gpus: 1}
    remote: Dict[str, Any] = field(default_factory=dict)


@dataclass
class RayLauncherConf:
    _target_: str = "hydra_plugins.tfbuild_launchers.ray_launcher.RayLauncher"
    ray: RayConf = field(default_factory=RayConf)


class RayLauncher(Launcher):
    def __init__(self, ray: DictConfig) -> None:
        self.ray_cfg = ray
        self.hydra_context: Optional[HydraContext] = None
        self.task_function: Optional[TaskFunction] = None
        self.config: Optional[DictConfig] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from tfbuild.ray_launcher import launch

        return launch(self, job_overrides, initial_job_idx)


# This replaces hydra-ray-launcher's own `hydra/launcher=ray` (same settings, `hydra.launcher.ray.
# init.*` and `.remote.*`): its config module is loaded first, so whichever order Hydra scans
# the plugins in, this entry is the one that stays.
try:
    import hydra_plugins.hydra_ray_launcher._config  # noqa: F401
except ImportError:  # the ray extra is not installed: tfbuild.ray_launcher says so when used
    pass
ConfigStore.instance().store(group="hydra/launcher", name="ray", node=RayLauncherConf, provider="tfbuild")
