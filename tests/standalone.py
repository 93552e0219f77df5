"""Runs a saved module in a fresh interpreter where ``import graphgrad`` fails."""
import subprocess
import sys
import textwrap

import numpy as np


def run_without_graphgrad(path, params: dict, feeds: dict):
    """``run(params, **feeds)`` of the module saved at ``path``: (value, grads) as the subprocess computed them."""
    data, result = path.with_suffix(".in.npz"), path.with_suffix(".out.npz")
    np.savez(data, **{f"param:{k}": v for k, v in params.items()}, **{f"feed:{k}": v for k, v in feeds.items()})
    script = textwrap.dedent(f"""
        import sys
        sys.modules["graphgrad"] = None  # any import of graphgrad now fails
        sys.path.insert(0, {str(path.parent)!r})
        import numpy as np, {path.stem}
        d = np.load({str(data)!r})
        params = {{k[6:]: d[k] for k in d.files if k.startswith("param:")}}
        feeds = {{k[5:]: d[k] for k in d.files if k.startswith("feed:")}}
        value, grads = {path.stem}.run(params, **feeds)
        np.savez({str(result)!r}, value=value, **grads)
    """)
    subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    out = dict(np.load(result))
    return out.pop("value"), out
