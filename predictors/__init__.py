"""Prediction and serving: the Predictor and the SavedModel export it loads."""

from predictors.predictor import Predictor, StaleVocabError

__all__ = ["Predictor", "StaleVocabError"]
