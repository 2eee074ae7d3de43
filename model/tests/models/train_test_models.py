"""Trains the small models the equality tests score that need LightGBM's Python package (the
lightgbm3 crate cannot set dataset parameters: categorical features, zero_as_missing). Run:
python3 train_test_models.py (writes the model files beside this file)."""
import os

import lightgbm as lgb
import numpy as np

here = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(7)
n = 20000
x = np.column_stack([
    rng.integers(0, 40, n).astype(float),       # categorical, 40 levels (two bitset words)
    rng.normal(size=n),                          # numerical
    rng.integers(0, 5, n).astype(float),         # categorical, 5 levels
    rng.normal(size=n),
])
x[rng.random(n) < 0.05, 0] = np.nan
x[rng.random(n) < 0.05, 1] = np.nan
logit = np.where(np.isin(x[:, 0], [3, 7, 11, 33, 38]), 2.0, -1.0) + x[:, 1] + (x[:, 2] == 4) * 1.5
y = (rng.random(n) < 1 / (1 + np.exp(-np.nan_to_num(logit)))).astype(float)
names = ["merchant_cat", "amount_z", "channel", "noise"]
params = dict(objective="binary", num_leaves=15, learning_rate=0.1, seed=7, deterministic=True,
              num_threads=1, verbose=-1, max_cat_to_onehot=4, min_data_per_group=20, cat_smooth=1)
ds = lgb.Dataset(x, y, feature_name=names, categorical_feature=[0, 2])
lgb.train(params, ds, num_boost_round=40).save_model(os.path.join(here, "categorical_binary.txt"))

y3 = np.digitize(np.nan_to_num(logit) + rng.normal(size=n), [-0.5, 1.0]).astype(float)
params.update(objective="multiclass", num_class=3)
ds = lgb.Dataset(x, y3, feature_name=names, categorical_feature=[0, 2])
lgb.train(params, ds, num_boost_round=20).save_model(os.path.join(here, "categorical_multiclass.txt"))

# zero_as_missing: splits whose missing type is Zero (zeros and NaN take the default direction).
xz = x.copy()
xz[rng.random(n) < 0.1, 1] = 0.0
xz[rng.random(n) < 0.1, 3] = 0.0
params = dict(objective="binary", num_leaves=15, learning_rate=0.1, seed=7, deterministic=True,
              num_threads=1, verbose=-1, zero_as_missing=True)
ds = lgb.Dataset(xz, y, feature_name=names, params={"zero_as_missing": True})
lgb.train(params, ds, num_boost_round=40).save_model(os.path.join(here, "zero_as_missing.txt"))
