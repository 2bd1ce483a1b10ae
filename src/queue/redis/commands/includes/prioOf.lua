--- @include "includes/keys"
-- A stored priority, or normal when it is missing or not one of the four.
local function prio_of(p) if p and PENDING[p] then return p end return 'normal' end
