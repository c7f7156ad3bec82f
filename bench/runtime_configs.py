"""The app's speed against the fastest llama.cpp configuration this machine allows.

Every configuration the probe knows (repacked weights, with a micro-batch of one, no
repacking, no repacking on one thread), at every thread count, streams the bundled model
raw with llama-cpp-python; a configuration that crashes here is reported as such. The
fastest that survives is the baseline. Then the app in embedded mode (`localai serve`, its
model runner, a websocket client) and that baseline alternate, after a warm-up:

    python bench/runtime_configs.py [--runs 7] [--max-tokens 200]

One JSON line: tok/s of each configuration, the probe's choice, and ratio_vs_best, the
median over (best raw, app) pairs of app / raw (goal ≥ 0.9).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import VENV_BIN, app_env, free_port, median, processes, report, wait_for_http  # noqa: E402
from bench.stream_overhead import AppClient, fastest_raw, probed_config  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--max-tokens", type=int, default=200)
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="localai-bench-"))
    env = app_env(data_dir, CHAT_MAX_TOKENS=str(args.max_tokens), CHAT_TEMPERATURE="0")
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    from models_hub import probe
    from models_hub.runner_protocol import config_candidates
    from models_hub.runtime import load_spec_for
    from models_hub.services import bundled_model_register

    call_command("migrate", verbosity=0)
    chosen = probed_config()
    configs, best, best_config, best_speed = {}, None, None, -1.0
    for config in config_candidates(load_spec_for(bundled_model_register())):
        runner, speed = fastest_raw(args.max_tokens, config.as_dict())
        configs[config.label] = speed
        if runner is None:
            continue
        if speed > best_speed:
            if best:
                best.close()
            best, best_config, best_speed = runner, config, speed
        else:
            runner.close()

    port = free_port()
    serve = [str(VENV_BIN / "localai"), "serve", "--no-migrate", "--port", str(port)]
    with processes((serve, env, data_dir / "embedded.log")):
        wait_for_http(f"http://127.0.0.1:{port}/healthz")
        app = AppClient(port)
        app.run()  # warm-up: the runner starts and loads the model
        app.run()
        pairs = [(best.run(), app.run()) for _ in range(args.runs)]
    best.close()
    report(
        {
            "bench": "runtime_configs",
            "configs_tok_s": configs,
            "probe_chose": chosen,
            "best": best_config.label,
            "best_threads": best.threads,
            "best_tok_s": median([raw["tok_s"] for raw, _ in pairs]),
            "app_tok_s": median([app["tok_s"] for _, app in pairs]),
            "ratio_vs_best": round(statistics.median(app["tok_s"] / raw["tok_s"] for raw, app in pairs), 3),
            "runs": args.runs,
            "cpu_features": probe.cpu_features(),
        }
    )


if __name__ == "__main__":
    main()
