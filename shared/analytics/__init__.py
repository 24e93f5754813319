"""What analytics and the API's metrics routes share: histogram buckets and their reading."""
