// argocd-lua runs an Argo CD resource health script the way Argo CD does
// (github.com/argoproj/argo-cd util/lua/lua.go, VM.runLua + ExecuteHealthLua):
// gopher-lua with SkipOpenLibs, then only the package, base and table libraries
// opened, the object as the global `obj` (decoded from JSON like Argo CD's
// decodeValue), the script run with DoString, and the value it leaves on the stack
// taken as the health status, which must be a table whose status is one of Argo CD's
// health codes.
//
// Usage: argocd-lua SCRIPT.lua < object.json   prints {"status": ..., "message": ...}
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	lua "github.com/yuin/gopher-lua"
)

var validCodes = map[string]bool{
	"Unknown": true, "Progressing": true, "Suspended": true,
	"Healthy": true, "Degraded": true, "Missing": true,
}

func decodeValue(l *lua.LState, value interface{}) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case []interface{}:
		arr := l.CreateTable(len(v), 0)
		for _, item := range v {
			arr.Append(decodeValue(l, item))
		}
		return arr
	case map[string]interface{}:
		tbl := l.CreateTable(0, len(v))
		for key, item := range v {
			tbl.RawSetH(lua.LString(key), decodeValue(l, item))
		}
		return tbl
	}
	return lua.LNil
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "argocd-lua: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	if len(os.Args) != 2 {
		fail("usage: argocd-lua SCRIPT.lua < object.json")
	}
	script, err := os.ReadFile(os.Args[1])
	if err != nil {
		fail("%v", err)
	}
	var obj map[string]interface{}
	if err := json.NewDecoder(os.Stdin).Decode(&obj); err != nil {
		fail("object: %v", err)
	}
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, pair := range []struct {
		n string
		f lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(pair.f), NRet: 0, Protect: true}, lua.LString(pair.n)); err != nil {
			fail("opening %s: %v", pair.n, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", decodeValue(l, obj))
	if err := l.DoString(string(script)); err != nil {
		fail("script: %v", err)
	}
	ret := l.Get(-1)
	tbl, ok := ret.(*lua.LTable)
	if !ok {
		fail("expect table output from Lua script, not %s", ret.Type().String())
	}
	out := map[string]string{}
	for _, key := range []string{"status", "message"} {
		switch v := tbl.RawGetString(key).(type) {
		case lua.LString:
			out[key] = string(v)
		case *lua.LNilType:
		default:
			fail("%s is a %s, Argo CD wants a string", key, v.Type().String())
		}
	}
	if !validCodes[out["status"]] {
		fail("Lua returned an invalid health status %q", out["status"])
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fail("%v", err)
	}
}
