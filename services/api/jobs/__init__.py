"""What the api does with jobs: request schemas, planning submissions, cancel/retry, resource views."""
