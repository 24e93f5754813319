"""The figures of the analytics routes (DESIGN §5), computed from the analytics service's aggregates.

`windows` turns a window (and a timeline step) into the bucket ranges to read, `capacity` holds the
Little's-law hints, `figures` builds the response bodies from the rows the store returns.
"""
