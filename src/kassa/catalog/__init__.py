"""The catalog: meters, versioned plans with charges, coupons."""
