"""Break one backend in a small way, run the tests, and list the tests that catch it.

    python benchmarks/mutation_check.py              # every mutation below
    python benchmarks/mutation_check.py --only tv-half
    python benchmarks/mutation_check.py --first      # quicker: stop each run at its first failing test

Each mutation is applied to a copy of the tree (never to the working tree);
a mutation whose text is not found is itself a failure, so the list cannot
silently go stale. Every mutation must be caught by at least one test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TESTS = ["tests/test_agreement.py", "tests/test_reference.py", "tests/test_contract.py",
         "tests/test_torch_backend.py", "tests/test_tensorflow_backend.py", "tests/test_jax_backend.py",
         "tests/test_keras_file_backends.py", "tests/test_float64.py"]


@dataclass(frozen=True)
class Mutation:
    name: str
    what: str
    file: str
    edits: tuple[tuple[str, str], ...]  # (old, new), each old must occur exactly once


MUTATIONS = (
    Mutation("tv-half", "torch: drop the 0.5 in TV", "backends/torch_backend.py",
             (("        return scale * (\n", "        return (\n"),)),
    Mutation("gram-layout", "tensorflow: Gram from an NHWC map reshaped as if channels came first",
             "backends/tensorflow_backend.py",
             (("X = tf.reshape(X, (n, num_channels))", "X = tf.transpose(tf.reshape(X, (num_channels, n)))"),)),
    Mutation("adam-eps", "jax: Adam's epsilon hard-coded to Keras' default 1e-7", "backends/jax_backend.py",
             (("return optax.adam(schedule, eps=eps)", "return optax.adam(schedule, eps=1e-7)"),)),
    Mutation("pre-relu-tap", "torch: relu taps read the conv output before the ReLU", "backends/torch_backend.py",
             (("X = self.net[layer.index](X)", "X, before = self.net[layer.index](X), X"),
              ("outputs[layer.name] = X.to(self.dtype)",
               "outputs[layer.name] = (before if layer.kind == 'relu' else X).to(self.dtype)"))),
    Mutation("steplr-off-by-one", "torch: scheduler stepped before the optimizer", "backends/torch_backend.py",
             (("        state.trainer.step()\n        if state.scheduler is not None:\n            state.scheduler.step()\n",
               "        if state.scheduler is not None:\n            state.scheduler.step()\n        state.trainer.step()\n"),)),
    Mutation("abs-grad", "jax: jnp.abs in TV (gradient 1 at 0)", "backends/jax_backend.py",
             (("    return jnp.sign(x) * x\n", "    return jnp.abs(x)\n"),)),
    Mutation("content-sum", "tensorflow: content loss summed instead of averaged", "backends/tensorflow_backend.py",
             (("return tf.reduce_mean(tf.square(Y_hat - tf.stop_gradient(Y)))",
               "return tf.reduce_sum(tf.square(Y_hat - tf.stop_gradient(Y)))"),)),
    Mutation("caffe-rgb", "torch: bundled (Caffe) weights fed RGB instead of BGR", "backends/torch_backend.py",
             (("X = X[:, transform.order] * transform.scale + transform.shift",
               "X = X * transform.scale + transform.shift"),)),
    # Formula differences that only float64 can see: every test above passes with them in float32.
    Mutation("reference-eps-hat", "tensorflow: reference Adam adds eps before v's bias correction (Keras' own)",
             "backends/tensorflow_backend.py",
             (("variable.assign_sub(lr * (m_hat / (tf.sqrt(v_hat) + self.epsilon)))",
               "variable.assign_sub(lr * (m_hat / ((tf.sqrt(v) + self.epsilon) / tf.sqrt(1 - b2**t))))"),)),
    Mutation("reference-lr-float32", "jax: reference Adam's StepLR from optax (lr computed in float32)",
             "backends/jax_backend.py",
             (("schedule = lambda count: lr * lr_decay ** (count // lr_decay_epoch)  # noqa: E731",
               "schedule = step_lr(lr, lr_decay_epoch, lr_decay)"),)),
    # The other recipes (issue 15).
    Mutation("adaptive-not-constant", "torch: TF1's adaptive factors differentiated (no stop-gradient)",
             "backends/torch_backend.py", (("    def stop_gradient(self, t):\n        return t.detach()",
                                            "    def stop_gradient(self, t):\n        return t"),)),
    Mutation("normalized-std-unbiased", "torch: the normalized step divides by the unbiased std",
             "backends/torch_backend.py", (("g.std(correction=0)", "g.std()"),)),
    Mutation("lbfgs-l2-first-step", "jax: L-BFGS' first step scaled by the L2 norm (optax's choice)",
             "backends/jax_lbfgs.py", (("jnp.minimum(1, 1 / jnp.sum(jnp.abs(g)))",
                                        "jnp.minimum(1, 1 / jnp.sqrt(jnp.sum(g * g)))"),)),
    Mutation("lbfgs-no-clamp", "tensorflow: the tutorial's closure evaluates the unclamped image",
             "backends/tensorflow_backend.py", (("            X = tf.clip_by_value(X, *recipe.clamp)\n", ""),)),
)


def copy_tree(dst: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split()
    for rel in files:
        if (REPO / rel).is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dst / rel)


def run(mutation: Mutation, first: bool = False) -> tuple[list[str], str]:
    with tempfile.TemporaryDirectory(prefix="mutant-") as tmp:
        root = Path(tmp)
        copy_tree(root)
        path = root / mutation.file
        text = path.read_text()
        for old, new in mutation.edits:
            if text.count(old) != 1:
                return [], f"mutation text found {text.count(old)} times in {mutation.file}: {old.strip()!r}"
            text = text.replace(old, new)
        path.write_text(text)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(root))
        out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf", "-o",
                              "addopts=", *(["-x"] if first else []), *TESTS], cwd=root, env=env, capture_output=True, text=True)
        failed = [line.split()[1] for line in out.stdout.splitlines() if line.startswith("FAILED ")]
        summary = (out.stdout.strip().splitlines() or ["no output"])[-1]
        return failed, summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma-separated mutation names")
    parser.add_argument("--tests", help="comma-separated test files instead of all (a quicker, partial check)")
    parser.add_argument("--first", action="store_true",
                        help="stop each mutation's run at the first failing test: proves each is caught, "
                             "without counting by how many tests")
    args = parser.parse_args()
    if args.tests:
        TESTS[:] = args.tests.split(",")
    chosen = [m for m in MUTATIONS if not args.only or m.name in args.only.split(",")]
    print("| mutation | caught | by (first tests) |\n|---|---:|---|")
    uncaught = 0
    for mutation in chosen:
        start = time.perf_counter()
        failed, summary = run(mutation, args.first)
        uncaught += not failed
        shown = ", ".join(f"`{f.split('::', 1)[1]}`" for f in failed[:4]) + (f" (+{len(failed) - 4} more)" if len(failed) > 4 else "")
        caught = ("yes" if failed else "no") if args.first else f"{len(failed)} tests"
        print(f"| {mutation.what} | {caught} | {shown or summary} |", flush=True)
        print(f"  ({mutation.name}: {summary}, {time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    return 1 if uncaught else 0


if __name__ == "__main__":
    sys.exit(main())
