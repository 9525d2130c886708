"""scikit-learn's own estimator checks, for every sknorm estimator and mode."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from sknorm import BatchNormalizer

ESTIMATORS = [
    BatchNormalizer(),
    BatchNormalizer(with_mean=False),
    BatchNormalizer(with_std=False),
    BatchNormalizer(with_mean=False, with_std=False),
    BatchNormalizer(eps=1e-5, clip=5.0),
    BatchNormalizer(momentum=0.1),
    BatchNormalizer(momentum=1.0, eps=1e-5),
    BatchNormalizer(half_life=50.0),
]


def expected_failures(estimator):
    """Checks that cannot hold by definition, each with its reason."""
    if getattr(estimator, "half_life", None) is not None:
        reason = (
            "half_life statistics weigh each row by its age, so they depend on "
            "row order; the check shuffles rows and compares with repeated rows"
        )
        return {
            "check_sample_weight_equivalence_on_dense_data": reason,
        }
    return {}


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failures)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
