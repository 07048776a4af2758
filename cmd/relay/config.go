package main

// Configuration from four layers, weakest first: the defaults, a YAML file
// (--config or $RELAY_CONFIG), RELAY_* environment variables, and flags.
// The FlagSet of defineFlags is the only list of settings: a file key is a
// flag name (max-members), a variable is RELAY_ and the name upper-cased
// with - as _ (RELAY_MAX_MEMBERS). SIGHUP re-reads every layer (reloader).

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.yaml.in/yaml/v3"

	"github.com/chatrelay/chatrelay/relay"
	"github.com/chatrelay/chatrelay/relay/wire"
)

// configKey is the flag naming the config file; it is not a file key.
const configKey = "config"

// maxConfigBytes bounds a config file: a few kilobytes are plenty.
const maxConfigBytes = 1 << 20

// envFunc looks up an environment variable, like os.LookupEnv. Tests pass
// a map's lookup instead of changing the process's environment.
type envFunc func(name string) (string, bool)

func noEnv(string) (string, bool) { return "", false }

// envName is the environment variable of a flag: RELAY_ and the name
// upper-cased, - as _.
func envName(key string) string {
	return "RELAY_" + strings.ToUpper(strings.ReplaceAll(key, "-", "_"))
}

// source is the layer a setting's value came from, weakest first.
type source uint8

const (
	fromDefault source = iota
	fromFile
	fromEnv
	fromFlag
)

// setting is one key of an effective configuration.
type setting struct {
	key   string
	value string // as the flag prints it; reads back through the flag
	quote bool   // a string: quote it in YAML
	src   source
	where string // "relay.yaml:7", "RELAY_LANG" or "--lang"; "" for a default
}

// comment says where the value came from, for `relay config check`.
func (s setting) comment() string {
	switch s.src {
	case fromFile:
		return "file " + s.where
	case fromEnv:
		return "env " + s.where
	case fromFlag:
		return "flag " + s.where
	}
	return "default"
}

// config is an effective configuration: valid Options and where each of
// their values came from.
type config struct {
	opts     Options
	file     string    // the config file read; "" for none
	settings []setting // every key but config, sorted by key
}

// lookup returns the setting of key.
func (c *config) lookup(key string) (setting, bool) {
	i := sort.Search(len(c.settings), func(i int) bool { return c.settings[i].key >= key })
	if i < len(c.settings) && c.settings[i].key == key {
		return c.settings[i], true
	}
	return setting{}, false
}

// loadConfig defines the flags on fs, parses args, then fills every
// setting not given as a flag from env (RELAY_*), then from the config file
// (--config, or RELAY_CONFIG), and validates the result. A value that is
// overridden is still checked: a bad file is an error even where a flag
// wins. Errors name the flag, the variable, or the file and line; all the
// file's errors are reported at once. fs's parse errors and errHelp are
// returned as they are.
func loadConfig(fs *flag.FlagSet, args []string, usageOut io.Writer, env envFunc) (*config, error) {
	o := defaultOptions()
	defineFlags(fs, &o)
	setUsage(fs, usageOut)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (see relay --help)", fs.Arg(0))
	}
	set := map[string]setting{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = setting{src: fromFlag, where: "--" + f.Name} })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if _, ok := set[f.Name]; ok {
			return
		}
		name := envName(f.Name)
		v, ok := env(name)
		if !ok {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: invalid value for %s: %s", name, v, f.Name, want(f)))
			return
		}
		set[f.Name] = setting{src: fromEnv, where: name}
	})
	if o.Config != "" {
		file, err := readConfigFile(o.Config, func(key string) bool { return key != configKey && fs.Lookup(key) != nil },
			func(key string) string { return closest(fs, key) })
		var lerrs lineErrors
		var others []error
		for _, e := range unjoin(err) {
			if le, ok := e.(lineError); ok {
				lerrs = append(lerrs, le)
			} else {
				others = append(others, e)
			}
		}
		var spare *flag.FlagSet // checks values that a flag or variable overrides
		for _, s := range file {
			if s.key == roomsKey {
				o.Rooms = s.rooms
				continue
			}
			where := o.Config + ":" + strconv.Itoa(s.line)
			target := fs
			if _, ok := set[s.key]; ok {
				if spare == nil {
					spare = flag.NewFlagSet("", flag.ContinueOnError)
					so := defaultOptions()
					defineFlags(spare, &so)
				}
				target = spare
				if spare.Lookup(s.key) == nil {
					continue // a flag the caller defined: no spare to check it on
				}
			}
			if err := target.Set(s.key, s.value); err != nil {
				lerrs.add(o.Config, s.line, fmt.Sprintf("%s: invalid value %q: %s", s.key, s.value, want(fs.Lookup(s.key))))
				continue
			}
			if target == fs {
				set[s.key] = setting{src: fromFile, where: where}
			}
		}
		errs = append(errs, others...)
		if err := lerrs.err(); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if err := o.validate(); err != nil {
		var oe *optionError
		if errors.As(err, &oe) {
			if s, ok := set[oe.key]; ok && (s.src == fromFile || s.src == fromEnv) {
				return nil, fmt.Errorf("%s: %s %s", s.where, oe.key, oe.msg)
			}
		}
		return nil, err
	}
	c := &config{opts: o, file: o.Config}
	fs.VisitAll(func(f *flag.Flag) { // sorted by name
		if f.Name == configKey {
			return
		}
		s := set[f.Name]
		s.key, s.value = f.Name, f.Value.String()
		if g, ok := f.Value.(flag.Getter); ok {
			_, s.quote = g.Get().(string)
		}
		c.settings = append(c.settings, s)
	})
	return c, nil
}

// want says what kind of value flag f takes.
func want(f *flag.Flag) string {
	if g, ok := f.Value.(flag.Getter); ok {
		switch g.Get().(type) {
		case bool:
			return "want true or false"
		case int:
			return "want a whole number"
		case float64:
			return "want a number"
		case time.Duration:
			return "want a duration such as 30s, 5m or 1h"
		}
	}
	return "not accepted"
}

// unjoin returns the errors err joins (errors.Join), or err alone.
func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// fileSetting is one key: value line of a config file.
type fileSetting struct {
	key, value string
	line       int
	rooms      []relay.RoomSettings // key roomsKey only
}

// roomsKey is the config file's one structured key: a list of the rooms
// that exist while empty, each a mapping of name, topic, limit and key.
// It has no flag or variable.
const roomsKey = "rooms"

// parseRooms reads the rooms list; errors name the line.
func parseRooms(name string, v *yaml.Node, errs *lineErrors) []relay.RoomSettings {
	if v.Kind != yaml.SequenceNode {
		errs.add(name, v.Line, "rooms: want a list of rooms, each with name and optional topic, limit and key")
		return nil
	}
	var out []relay.RoomSettings
	seen := map[string]int{}
	for _, item := range v.Content {
		if item.Kind != yaml.MappingNode {
			errs.add(name, item.Line, "rooms: each room is a mapping: name, topic, limit, key")
			continue
		}
		var rs relay.RoomSettings
		ok := true
		for i := 0; i+1 < len(item.Content); i += 2 {
			k, val := item.Content[i], item.Content[i+1]
			if val.Kind != yaml.ScalarNode {
				errs.add(name, k.Line, fmt.Sprintf("rooms: %s: want one value", k.Value))
				ok = false
				continue
			}
			switch k.Value {
			case "name":
				rs.Name = val.Value
			case "topic":
				rs.Topic = val.Value
			case "key":
				rs.Key = val.Value
			case "limit":
				n, err := strconv.Atoi(val.Value)
				if err != nil || n < 0 {
					errs.add(name, k.Line, fmt.Sprintf("rooms: limit %q: want a whole number, 0 for none", val.Value))
					ok = false
				}
				rs.Limit = n
			default:
				errs.add(name, k.Line, fmt.Sprintf("rooms: unknown key %q (want name, topic, limit or key)", k.Value))
				ok = false
			}
		}
		_, roomKey, err := wire.CanonicalRoom(rs.Name)
		switch {
		case err != nil:
			errs.add(name, item.Line, fmt.Sprintf("rooms: name %q: 1 to %d characters, no spaces, not starting with @", rs.Name, wire.MaxRoomRunes))
			ok = false
		case seen[roomKey] != 0:
			errs.add(name, item.Line, fmt.Sprintf("rooms: %s is listed twice (first on line %d)", rs.Name, seen[roomKey]))
			ok = false
		case rs.Topic != "" && wire.CheckText(rs.Topic) != nil:
			errs.add(name, item.Line, "rooms: topic: control characters are not allowed")
			ok = false
		}
		if err == nil {
			seen[roomKey] = item.Line
		}
		if ok {
			out = append(out, rs)
		}
	}
	return out
}

// readConfigFile reads and parses a config file (see parseConfig).
func readConfigFile(path string, known func(key string) bool, hint func(key string) string) ([]fileSetting, error) {
	f, err := os.Open(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigBytes+1))
	if err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	if len(data) > maxConfigBytes {
		return nil, fmt.Errorf("config file %s: larger than %d bytes", path, maxConfigBytes)
	}
	return parseConfig(path, data, known, hint)
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseConfig parses data, the YAML config file name, into its settings in
// file order: one mapping of known keys to single values. Everything else
// is an error naming name and the line: unknown or repeated keys, lists,
// nested mappings, keys without a value, YAML syntax errors. The settings
// it could read come back with the errors. It never panics.
func parseConfig(name string, data []byte, known func(key string) bool, hint func(key string) string) (out []fileSetting, err error) {
	defer func() {
		if v := recover(); v != nil {
			out, err = nil, fmt.Errorf("%s: cannot parse YAML: %v", name, v)
		}
	}()
	yerr := func(err error) error {
		if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
			return fmt.Errorf("%s:%s: %s", name, m[1], m[2])
		}
		return fmt.Errorf("%s: %s", name, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil // empty: every setting keeps its default
		}
		return nil, yerr(err)
	}
	var more yaml.Node
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, yerr(err)
		}
		return nil, fmt.Errorf("%s:%d: a second YAML document: the file is one mapping of settings", name, more.Line)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return nil, nil
		}
		root = root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil, nil // only comments, or a bare ~
	}
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s:%d: want settings as key: value lines, e.g. max-members: 500", name, root.Line)
	}
	var errs lineErrors
	seen := map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			errs.add(name, k.Line, "a key must be a setting's name")
			continue
		}
		key := k.Value
		if key == roomsKey {
			if first, dup := seen[key]; dup {
				errs.add(name, k.Line, fmt.Sprintf("%s is set twice (first on line %d)", key, first))
				continue
			}
			seen[key] = k.Line
			out = append(out, fileSetting{key: key, line: k.Line, rooms: parseRooms(name, v, &errs)})
			continue
		}
		if !known(key) {
			msg := fmt.Sprintf("unknown key %q", key)
			if h := hint(key); h != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", h)
			}
			errs.add(name, k.Line, msg)
			continue
		}
		if first, dup := seen[key]; dup {
			errs.add(name, k.Line, fmt.Sprintf("%s is set twice (first on line %d)", key, first))
			continue
		}
		seen[key] = k.Line
		if v.Kind == yaml.AliasNode && v.Alias != nil {
			v = v.Alias
		}
		switch {
		case v.Kind == yaml.SequenceNode:
			errs.add(name, k.Line, key+": want one value, not a list")
		case v.Kind == yaml.MappingNode:
			errs.add(name, k.Line, key+": want one value, not a nested mapping")
		case v.Kind != yaml.ScalarNode:
			errs.add(name, k.Line, key+": want one value")
		case v.Tag == "!!null":
			errs.add(name, k.Line, key+` has no value (write "" for an empty one)`)
		default:
			out = append(out, fileSetting{key: key, value: v.Value, line: k.Line})
		}
	}
	return out, errs.err()
}

// lineErrors collects a config file's errors, to report them in line order.
type lineErrors []lineError

// lineError is one error at a line of a config file.
type lineError struct {
	file string
	line int
	msg  string
}

func (e lineError) Error() string { return fmt.Sprintf("%s:%d: %s", e.file, e.line, e.msg) }

func (l *lineErrors) add(file string, line int, msg string) {
	*l = append(*l, lineError{file: file, line: line, msg: msg})
}

// err returns the errors sorted by line, nil if there are none.
func (l lineErrors) err() error {
	if len(l) == 0 {
		return nil
	}
	sort.SliceStable(l, func(i, j int) bool { return l[i].line < l[j].line })
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errors.Join(errs...)
}

// closest returns the flag whose name is nearest to key, if it is close
// enough to be a typo, or "".
func closest(fs *flag.FlagSet, key string) string {
	best, bestD := "", 3
	if len(key) > 64 {
		return ""
	}
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == configKey {
			return
		}
		if d := editDistance(strings.ToLower(key), f.Name); d < bestD {
			best, bestD = f.Name, d
		}
	})
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// writeYAML prints c as a config file a user could use: every key with its
// value, and where the value came from as a comment.
func (c *config) writeYAML(w io.Writer) error {
	m := &yaml.Node{Kind: yaml.MappingNode}
	for _, s := range c.settings {
		v := &yaml.Node{Kind: yaml.ScalarNode, Value: s.value, LineComment: s.comment()}
		if s.quote {
			v.Tag, v.Style = "!!str", yaml.DoubleQuotedStyle
		}
		m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: s.key}, v)
	}
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(m); err != nil {
		return err
	}
	return enc.Close()
}

// runConfig is `relay config check FILE`: exit 0 and the effective
// configuration on stdout when FILE (with the environment) is valid, 1 and
// the errors on stderr when not, 2 for a usage error.
func runConfig(args []string, stdout, stderr io.Writer, env envFunc) int {
	if len(args) != 2 || args[0] != "check" || args[1] == "" || strings.HasPrefix(args[1], "-") {
		fmt.Fprintln(stderr, "usage: relay config check FILE")
		return 2
	}
	path := args[1]
	c, err := loadConfig(flag.NewFlagSet("relay", flag.ContinueOnError), []string{"--" + configKey, path}, io.Discard, env)
	if err != nil {
		printErr(stderr, "relay config check: ", err)
		return 1
	}
	fmt.Fprintf(stdout, "# %s is valid. The effective configuration, each value's source in its comment:\n", path)
	if err := c.writeYAML(stdout); err != nil {
		printErr(stderr, "relay config check: ", err)
		return 1
	}
	return 0
}

// printErr prints err on w, each of its lines after prefix.
func printErr(w io.Writer, prefix string, err error) {
	for _, l := range strings.Split(err.Error(), "\n") {
		fmt.Fprintf(w, "%s%s\n", prefix, l)
	}
}

// liveKeys are the settings a reload applies to the running relay without
// dropping anyone. Every other key, including any flag added later, needs a
// restart, which is the safe default.
var liveKeys = map[string]bool{
	"max-members":          true,
	"max-per-ip":           true,
	"per-ip-loopback":      true,
	"lang":                 true,
	"log-level":            true,
	"v2-timeout":           true,
	"classic-idle":         true,
	"flood":                true,
	"flood-chat-rate":      true,
	"flood-chat-burst":     true,
	"flood-datagram-rate":  true,
	"flood-datagram-burst": true,
	"limit-exempt":         true,
}

// liveOf returns the relay's live settings from valid options.
func liveOf(o Options) (relay.Live, error) {
	lang, err := wire.ParseLang(o.Lang)
	if err != nil {
		return relay.Live{}, err
	}
	fl, err := o.floodSettings()
	if err != nil {
		return relay.Live{}, err
	}
	return relay.Live{
		MaxMembers:         o.MaxMembers,
		MaxPerIP:           o.MaxPerIP,
		LimitLoopbackPerIP: o.PerIPLoopback,
		Lang:               lang,
		V2Timeout:          o.V2Timeout,
		ClassicIdle:        o.ClassicIdle,
		Flood:              fl,
	}, nil
}

// withLive returns c with the live settings of next, and its own values
// for the settings that need a restart.
func (c *config) withLive(next *config) (*config, error) {
	o := c.opts
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	defineFlags(fs, &o)
	merged := &config{file: next.file, settings: append([]setting(nil), c.settings...)}
	for i, s := range merged.settings {
		if !liveKeys[s.key] {
			continue
		}
		n, ok := next.lookup(s.key)
		if !ok {
			continue
		}
		if err := fs.Set(s.key, n.value); err != nil {
			return nil, fmt.Errorf("%s: %w", s.key, err)
		}
		merged.settings[i] = n
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	merged.opts = o
	return merged, nil
}

// reloader re-reads the configuration on each signal: the file, the
// environment and the same flags, with the same precedence.
type reloader struct {
	signals <-chan os.Signal
	load    func() (*config, error) // reads every layer again
	level   zap.AtomicLevel         // the daemon logger's level
	current *config                 // what the relay runs with
}

// reload re-reads the configuration and applies its live settings to srv.
// Settings that need a restart are logged, each with its running and new
// value, and keep their running value. On any error the running settings
// stay and the error is logged.
func (r *reloader) reload(srv *relay.Server, log *zap.Logger) {
	log = log.Named("config")
	next, err := r.load()
	if err != nil {
		log.Error("reload failed: the running settings stay", zap.String("file", r.current.file), zap.Error(err))
		return
	}
	var changed []string
	for _, s := range next.settings {
		old, _ := r.current.lookup(s.key)
		if old.value == s.value {
			continue
		}
		if !liveKeys[s.key] {
			log.Warn("setting needs a restart: the running value stays", zap.String("key", s.key),
				zap.String("running", old.value), zap.String("new", s.value), zap.String("from", next.sourceOf(s)))
			continue
		}
		changed = append(changed, s.key+"="+s.value)
	}
	merged, err := r.current.withLive(next)
	if err == nil {
		var live relay.Live
		if live, err = liveOf(merged.opts); err == nil {
			err = srv.Reconfigure(live)
		}
	}
	if err != nil {
		log.Error("reload failed: the running settings stay", zap.String("file", next.file), zap.Error(err))
		return
	}
	r.current = merged
	log.Info("reloaded", zap.String("file", next.file), zap.Strings("changed", changed))
	if lvl, err := parseLevel(merged.opts.LogLevel); err == nil {
		r.level.SetLevel(lvl)
	}
}

// sourceOf says where s came from, for logs.
func (c *config) sourceOf(s setting) string {
	if s.where == "" {
		return "default"
	}
	return s.where
}
