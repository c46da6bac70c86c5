-- streamdist's Argo CD health check of a kind: argocd/health/common.lua (this part,
-- the same for both kinds) followed by argocd/health/<Kind>.lua, joined by
-- hack/gen-install.sh. No status yet, or a status of an older generation: Progressing.
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
