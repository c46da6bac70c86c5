-- Argo CD health of a streamdist.io StreamOutput, from the status the streamdist operator
-- writes: phase Pending | Connecting | Streaming | Reconnecting | Suspended | Scheduled |
-- Failed | Invalid, conditions Ready and InputReady, reconnects, lastError, a masked
-- destination, nextStart. Off air by its schedule is where the output should be: Healthy.
-- After argocd/health/common.lua: hs, status, ready, condition() and text() are set.
local to = ""
if status.destination ~= nil and status.destination ~= "" then
  to = " to " .. status.destination
end
local reconnects = tonumber(status.reconnects)
local count = ""
if reconnects ~= nil and reconnects > 0 then
  count = " (" .. tostring(status.reconnects) .. " reconnects)"
end
local phase = status.phase

if phase == "Streaming" then
  hs.status = "Healthy"
  hs.message = "Streaming" .. to .. count
elseif phase == "Pending" or phase == "Connecting" then
  hs.status = "Progressing"
  hs.message = phase .. ": " .. text(ready, "starting FFmpeg") .. count
elseif phase == "Reconnecting" then
  hs.status = "Progressing"
  local last = text(ready, "FFmpeg exited")
  if status.lastError ~= nil and status.lastError ~= "" then
    last = status.lastError
  end
  hs.message = "Reconnecting" .. to .. count .. ": " .. last
elseif phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = "Suspended (spec.suspend is true)"
elseif phase == "Scheduled" then
  hs.status = "Healthy"
  if status.nextStart ~= nil and status.nextStart ~= "" then
    hs.message = "Scheduled: off air until " .. status.nextStart
  else
    hs.message = "Scheduled: off air, no window of spec.schedule ahead"
  end
elseif phase == "Failed" or phase == "Invalid" then
  hs.status = "Degraded"
  local reason = phase
  if ready ~= nil and ready.reason ~= nil and ready.reason ~= "" then
    reason = ready.reason
  end
  hs.message = reason .. ": " .. text(ready, "the output cannot run")
else
  hs.status = "Unknown"
  hs.message = "Unknown phase " .. tostring(phase)
end
return hs
