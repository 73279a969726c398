"""OptFormer (Chen et al., "Towards Learning Universal Hyperparameter Optimizers with Transformers",
NeurIPS 2022): a causal transformer over serialised, quantised trials, behaviour-cloned on the runs
of teacher optimisers, that proposes like the paper's OptFormer-EI.

Serialisation. An episode is one token sequence: BOS, the prior context, then the target trials.
A trial is [F, x_1 .. x_d, y]: a fidelity slot F, each unit-cube coordinate quantised to Q bins,
then the outcome quantised to Q bins. A token embeds its value, its slot in the trial and its
trial's index among the target trials; every token of a trial also carries the trial's fidelity
features (log10 descriptors and GPU-hours, standardised on the fit experiments, and the same
relative to the target: a continuous stand-in for the paper's metadata tokens) and the coordinates
of the trial read so far (`Serialiser`). Outcomes are oriented to be maximised (`-objective.sign *
value`) and normalised within the episode per fidelity, never absolute: a prior run by its quantile
among the episode's prior runs at its fidelity; a target trial, as input, by its online rank among
the target trials so far, (#worse + #ties/2 + 1/2) / j (the paper's within-study normalisation in a
form that is fixed once observed, so training and asking see the same tokens).

Prior context. At most `context_trials` prior runs (and `context_tokens` tokens): per prior
fidelity, most expensive first, its best max(`min_per_fidelity`, context_trials / fidelities) runs,
so the model sees how the good region moves from cheap to expensive; cheapest first in the sequence.

Training. Offline teacher runs on the fit experiments (`TrainingData.episodes`, the test protocols'
priors): per run a teacher among `best-prior`, `extrapolate`, `random` (from the method registry)
and `CheapGPEI` (a fixed-hyperparameter multi-fidelity GP-EI) makes up to `max_trials - 1` target
trials after the context, through the harness's loop (`bench.loop.run`). Loss: next-token
cross-entropy on the parameter tokens (the teacher's choices) and on the outcome tokens. A target
outcome's label is its quantile in the experiment's target pool (known offline on fit
experiments), the meaning a prior run's token has at its fidelity, so a candidate's predicted
outcome distribution is that of its pool quantile.
Changes for 2 CPU cores and a handful of training experiments (the paper has thousands of studies
and a T5-sized model), each stated where it lives:
- probes: `probes` target candidates per sequence and step, at a random cut of the teacher run (a
  share `probe_tried` among the trials already made), are scored through the prefix-sharing pass
  that asking uses, against their pool-quantile labels: outcomes are learnt for every candidate,
  not only for those a teacher chose, and the read-out of tried ones is taught;
- studies made from teacher runs (`augmentation`): a random shift of the coordinates (mixture
  weights: a permutation), fresh per step, so that memorising where the good candidates of the
  few fit experiments lie does not pay and the context must be read; dropout;
- the read-so-far coordinates embedded through a smooth basis, so one attention layer can compare
  whole trials.

Asking (OptFormer-EI). One batched pass: the history prefix (context + target trials) is encoded
once and every untried target candidate, and every tried one, is scored from its cached keys and
values. The threshold is the best expected quantile among the tried ones (at least `ei_floor`);
an untried candidate scores sum_b p(b) max(0, v_b - threshold) over the bin centres v_b; the
argmax is asked. Sizes are CPU-small (2 layers, d_model 64, Q = 64).

Layout:
- `tokens`: quantisation, the prior context, fidelity features, the serialiser (`Serialiser`, `Tokens`);
- `model`: the trial transformer, its attention masks, the prefix-sharing scorer (`score_candidates`);
- `teacher`: the teachers (`CheapGPEI`, registry methods) and their recorded runs (`TeacherRun`);
- `training`: `Settings`, generated teacher runs, augmentation, sequences, probes, loss, `train_model`;
- `optimizer`: `OptFormer`: meta-training, and asking (OptFormer-EI).
"""

from baselines.optformer.optimizer import OptFormer

__all__ = ["OptFormer"]
