# Shared by the sbatch scripts in this folder (sourced, not run).
#   CRYOFM_ROOT  checkout to run from (default: the folder sbatch was called from)
#   PYTHON       interpreter with cryofm installed (default: $CRYOFM_ROOT/.venv/bin/python)
#   DRY_RUN=1    print the commands instead of running them (used by the tests)
CRYOFM_ROOT=${CRYOFM_ROOT:-${SLURM_SUBMIT_DIR:-$(pwd)}}
PYTHON=${PYTHON:-$CRYOFM_ROOT/.venv/bin/python}
export PYTHONUNBUFFERED=1
# one data-loader thread pool per GPU process, not one per core
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}

# Requeue on the pre-timeout / preemption signal (#SBATCH --signal=B:USR1@300): the job keeps its
# id, so the run dir is the same and train.py resumes from its last checkpoint.
cryofm_requeue() {
  echo "cryofm: USR1 received, requeueing job ${SLURM_JOB_ID}" >&2
  scontrol requeue "${SLURM_JOB_ID}"
}

# run CMD...: print it (shell-quoted, one line) under DRY_RUN=1, else run it in the background and
# wait (so traps fire). Arguments stay whole: a quoted `wandb.name="my run"` is one argument.
cryofm_run() {
  if [[ "${DRY_RUN:-0}" == "1" ]]; then
    "$PYTHON" -c 'import shlex, sys; print(shlex.join(sys.argv[1:]))' "$@"
    return 0
  fi
  trap cryofm_requeue USR1
  "$@" &
  wait $!
}
