"""The Prefect task runner DESTA_TASK_RUNNER names (flows/settings.py), for every fanned-out stage.

- `threads` (default): a ThreadPoolTaskRunner of DESTA_TASK_WORKERS threads;
- `dask`: DaskTaskRunner (prefect-dask) on the cluster at DESTA_TASK_CLUSTER, else on a LocalCluster
  started for the run (DESTA_TASK_WORKERS worker processes, one thread each);
- `ray`: RayTaskRunner (prefect-ray) on the cluster at DESTA_TASK_CLUSTER (`ray://host:10001` or
  `auto`), else on a local Ray head started for the run (DESTA_TASK_WORKERS CPUs).
"""

from __future__ import annotations

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from flows.settings import FlowSettings


def make_task_runner(settings: FlowSettings | None = None) -> TaskRunner:
    """The task runner DESTA_TASK_RUNNER names: threads here, dask/ray for a cluster (if installed)."""
    settings = settings or FlowSettings.from_env()
    if settings.task_runner == "threads":
        return ThreadPoolTaskRunner(max_workers=max(1, settings.task_workers))
    package = f"prefect-{settings.task_runner}"
    try:
        if settings.task_runner == "dask":
            from prefect_dask import DaskTaskRunner  # type: ignore[import-not-found]

            if settings.cluster_address:
                return DaskTaskRunner(address=settings.cluster_address)
            # A LocalCluster for this run: worker processes, one task at a time each (each loads its own model).
            return DaskTaskRunner(cluster_kwargs={"n_workers": max(1, settings.task_workers), "threads_per_worker": 1,
                                                  "processes": True, "dashboard_address": None})
        from prefect_ray import RayTaskRunner  # type: ignore[import-not-found]

        if settings.cluster_address:
            return RayTaskRunner(address=settings.cluster_address)
        # A local Ray head for this run: DESTA_TASK_WORKERS CPUs, so as many worker processes at a time.
        return RayTaskRunner(init_kwargs={"num_cpus": max(1, settings.task_workers), "include_dashboard": False,
                                          "log_to_driver": False, "_node_ip_address": "127.0.0.1"})
    except ImportError:
        raise RuntimeError(
            f"DESTA_TASK_RUNNER={settings.task_runner} needs the {package} package, which is not installed "
            f"(pip install {package}); or use DESTA_TASK_RUNNER=threads"
        ) from None
