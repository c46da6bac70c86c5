-- Argo CD health of a streamdist.io StreamInput, from the status the streamdist operator
-- writes: phase Pending | Waiting | Live | Failed, conditions Ready and Receiving.
-- After argocd/health/common.lua: hs, status, ready, condition() and text() are set.
local at = ""
if status.endpoint ~= nil and status.endpoint ~= "" then
  at = " at " .. status.endpoint
end
local phase = status.phase

if phase == "Live" then
  hs.status = "Healthy"
  hs.message = "Live: a source is publishing" .. at
elseif phase == "Waiting" then
  hs.status = "Progressing"
  hs.message = "Router running, waiting for a source" .. at
elseif phase == "Pending" then
  hs.status = "Progressing"
  hs.message = text(ready, "Waiting for the MediaMTX router")
elseif phase == "Failed" then
  hs.status = "Degraded"
  local reason = ""
  if ready ~= nil and ready.reason ~= nil and ready.reason ~= "" then
    reason = ready.reason .. ": "
  end
  hs.message = reason .. text(ready, "the input failed")
else
  hs.status = "Unknown"
  hs.message = "Unknown phase " .. tostring(phase)
end
return hs
