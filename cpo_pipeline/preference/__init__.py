"""Preference data: the SFT set, CPO pairs, the random-negative baseline and the diagnosis-only
ablation, assembled from `counterfactual_trajectories`, filtered, checked and exported for TRL.

No Dagster here: `assets/preference.py` wires these functions into assets.
"""
