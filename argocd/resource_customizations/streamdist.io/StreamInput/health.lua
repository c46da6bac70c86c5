-- Argo CD health of a streamdist.io StreamInput, from the status the streamdist operator
-- writes: phase Pending | Waiting | Live | Failed, conditions Ready and Receiving.
-- Argo CD runs this in gopher-lua (Lua 5.1) with only the base, table and package
-- libraries open: no string or math library, so strings are only compared and joined.
local hs = {}

local function condition(status, ctype)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == ctype then
      return c
    end
  end
  return nil
end

-- A condition's message, or the fallback when it has none.
local function text(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  return fallback
end

local status = obj.status
if status == nil or status.phase == nil or status.phase == "" then
  hs.status = "Progressing"
  hs.message = "Waiting for the streamdist operator to report"
  return hs
end

local generation = tonumber(obj.metadata.generation)
local observed = tonumber(status.observedGeneration)
if generation ~= nil and observed ~= nil and observed < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to act on generation " .. tostring(obj.metadata.generation)
  return hs
end

local ready = condition(status, "Ready")
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
