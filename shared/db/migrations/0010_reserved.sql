-- Placeholder on the `alerts` branch only: 0010 is the metrics helper's migration. The lead drops this
-- file when merging (migrations refuse gaps, so 0011 needs a 0010 to be tested on its own).
SELECT 1;
