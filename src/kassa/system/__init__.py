"""Operations: health, readiness, metrics, housekeeping jobs."""
