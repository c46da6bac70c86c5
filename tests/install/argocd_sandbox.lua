-- Runs an Argo CD health script in a stock Lua interpreter (lua5.1 .. lua5.4) under
-- the conditions Argo CD gives it (util/lua/lua.go): the object is the global `obj`,
-- only the base, table and package libraries exist (no string, math, io, os.execute),
-- strings have no methods (Argo CD never opens the string library, so
-- ("x"):len() fails there), and the script's returned value is the health status.
--
-- usage: lua5.4 argocd_sandbox.lua SCRIPT.lua OBJECT.lua
--   OBJECT.lua is a chunk that returns the object as a table.
-- prints: the status on the first line, the message after it.
local script_path, object_path = arg[1], arg[2]

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local write, exit, stderr = io.write, os.exit, io.stderr
local compile = loadstring or load
local obj = assert(compile(slurp(object_path), "=object"))()
local source = slurp(script_path)

local env = {}
for _, name in ipairs({
  "assert", "error", "getmetatable", "ipairs", "next", "pairs", "pcall", "print",
  "rawequal", "rawget", "rawset", "select", "setmetatable", "tonumber", "tostring",
  "type", "unpack", "xpcall", "require",
}) do
  env[name] = _G[name]
end
env.table = table
env._G = env
env.obj = obj
debug.setmetatable("", nil)

local chunk, err
if setfenv then
  chunk, err = loadstring(source, "=health.lua")
  if chunk then setfenv(chunk, env) end
else
  chunk, err = load(source, "=health.lua", "t", env)
end
if not chunk then
  stderr:write("compile: " .. tostring(err) .. "\n")
  exit(1)
end
local ok, hs = pcall(chunk)
if not ok then
  stderr:write("script: " .. tostring(hs) .. "\n")
  exit(1)
end
if type(hs) ~= "table" then
  stderr:write("expect table output from Lua script, not " .. type(hs) .. "\n")
  exit(1)
end
for _, key in ipairs({"status", "message"}) do
  if hs[key] ~= nil and type(hs[key]) ~= "string" then
    stderr:write(key .. " is a " .. type(hs[key]) .. ", Argo CD wants a string\n")
    exit(1)
  end
end
write(tostring(hs.status), "\n", hs.message or "")
exit(0)
