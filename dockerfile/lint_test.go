package dockerfile

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// lintKeys renders warnings as "LINE:Rule" for comparison.
func lintKeys(ws []Warning) []string {
	out := make([]string, len(ws))
	for i, w := range ws {
		out[i] = fmt.Sprintf("%d:%s", w.Line, w.RuleName)
	}
	return out
}

// envResolver returns one config, with env and shell as given, for any image.
type envResolver struct {
	env   []string
	shell []string
	arch  string
	onb   []string
}

func (r envResolver) ResolveImageConfig(ctx context.Context, ref string) (*v1.ConfigFile, error) {
	cfg := busyboxConfig()
	cfg.Config.Env = append(cfg.Config.Env, r.env...)
	cfg.Config.Shell = r.shell
	cfg.Config.OnBuild = r.onb
	if r.arch != "" {
		cfg.Architecture = r.arch
	}
	return cfg, nil
}

func TestLintRules(t *testing.T) {
	tests := []struct {
		name string
		src  string
		opts LintOptions
		want []string // LINE:Rule, in order
		msgs []string // substrings some warning's message must contain
	}{
		{
			name: "clean multi-stage file",
			src: `# syntax=docker/dockerfile:1
ARG VERSION=1.36
FROM busybox:${VERSION} AS build
ARG VERSION
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/root/.cache make VERSION=$VERSION
ENV OUT=/src/out
LABEL org.opencontainers.image.version=$VERSION

FROM scratch
COPY --from=build /src/out /app
EXPOSE 8080/tcp 53/udp
HEALTHCHECK CMD ["/app", "ping"]
ENTRYPOINT ["/app"]
CMD ["serve"]
`,
			opts: LintOptions{Resolver: envResolver{}},
			want: []string{},
		},
		{
			name: "clean without a resolver",
			src:  "FROM debian:bookworm\nENV GOPATH=$GOPATH:/go\nCMD [\"bash\"]\n",
			want: []string{},
		},
		{
			name: "stage name and AS casing",
			src:  "FROM scratch AS Build\nFROM scratch as other\nfrom scratch AS third\nfrom scratch as fourth\n",
			want: []string{"1:StageNameCasing", "2:FromAsCasing", "3:FromAsCasing", "3:ConsistentInstructionCasing", "4:ConsistentInstructionCasing"},
			msgs: []string{"Stage name 'Build' should be lowercase", "'as' and 'FROM' keywords' casing do not match"},
		},
		{
			name: "instruction casing follows the majority",
			src:  "FROM scratch\ncopy a /a\nCOPY b /b\nCoPy c /c\n",
			want: []string{"2:ConsistentInstructionCasing", "4:ConsistentInstructionCasing"},
			msgs: []string{"Command 'copy' should match the case of the command majority (uppercase)"},
		},
		{
			name: "lowercase majority",
			src:  "from scratch\ncopy a /a\nCOPY b /b\ncopy c /c\n",
			want: []string{"3:ConsistentInstructionCasing"},
			msgs: []string{"(lowercase)"},
		},
		{
			name: "duplicate and reserved stage names",
			src:  "FROM scratch AS a\nFROM scratch AS a\nFROM scratch AS context\nFROM scratch AS scratch\n",
			want: []string{"2:DuplicateStageName", "3:ReservedStageName", "4:ReservedStageName"},
			msgs: []string{`Duplicate stage name "a"`, `reserved stage "context"`},
		},
		{
			name: "shell-form CMD and ENTRYPOINT",
			src:  "FROM scratch\nENTRYPOINT /app\nCMD serve --port 80\nRUN echo shell form is fine for RUN\n",
			want: []string{"2:JSONArgsRecommended", "3:JSONArgsRecommended"},
			msgs: []string{"JSON arguments recommended for ENTRYPOINT", "JSON arguments recommended for CMD"},
		},
		{
			name: "SHELL, also from a base stage, quiets JSONArgsRecommended",
			src:  "FROM scratch AS base\nSHELL [\"/bin/bash\", \"-c\"]\nCMD serve\nFROM base\nENTRYPOINT run\n",
			want: []string{},
		},
		{
			name: "SHELL of the base image quiets JSONArgsRecommended",
			src:  "FROM img\nCMD serve\n",
			opts: LintOptions{Resolver: envResolver{shell: []string{"pwsh", "-c"}}},
			want: []string{},
		},
		{
			name: "maintainer",
			src:  "FROM scratch\nMAINTAINER me@example.org\n",
			want: []string{"2:MaintainerDeprecated"},
		},
		{
			name: "undefined variable with a suggestion",
			src:  "FROM scratch\nARG DIR_ASSETS=assets/\nCOPY $DIR_ASSET /srv/\n",
			want: []string{"3:UndefinedVar"},
			msgs: []string{"Usage of undefined variable '$DIR_ASSET' (did you mean $DIR_ASSETS?)"},
		},
		{
			name: "variable scoping",
			src: `ARG GLOBAL=1
FROM scratch AS base
ARG NOVALUE
ARG FROMBASE=x
COPY ${NOVALUE}a /
COPY $GLOBAL /
FROM base
COPY $FROMBASE /
ENV A=1 B=$A
WORKDIR /$PATH
`,
			want: []string{"6:UndefinedVar", "9:UndefinedVar"},
			msgs: []string{"'$GLOBAL'", "'$A'"},
		},
		{
			name: "use before ARG",
			src:  "FROM scratch\nCOPY $foo .\nARG foo=bar\nCOPY $foo .\n",
			want: []string{"2:UndefinedVar"},
		},
		{
			name: "unknown base image env: no UndefinedVar without a resolver",
			src:  "FROM golang\nENV PATH=$GOPATH/bin:$PATH\nFROM golang AS two\nCOPY $NOPE /\n",
			want: []string{},
		},
		{
			name: "base image env from the resolver",
			src:  "FROM golang\nENV PATH=$GOPATH/bin:$PATH\nCOPY $NOPE /\n",
			opts: LintOptions{Resolver: envResolver{env: []string{"GOPATH=/go"}}},
			want: []string{"3:UndefinedVar"},
			msgs: []string{"'$NOPE'"},
		},
		{
			name: "ONBUILD triggers of a base stage define variables",
			src:  "FROM scratch AS base\nONBUILD ENV FROMTRIGGER=1\nFROM base\nCOPY $FROMTRIGGER /\n",
			want: []string{},
		},
		{
			name: "ONBUILD triggers of a base image run at its FROM line",
			src:  "FROM img\nCMD [\"x\"]\n",
			opts: LintOptions{Resolver: envResolver{onb: []string{"ENV K v"}}},
			want: []string{"1:LegacyKeyValueFormat"},
		},
		{
			name: "legacy key value",
			src:  "FROM scratch\nENV color blue\nLABEL color blue\nENV k=v k2=v2\nLABEL k=v\n",
			want: []string{"2:LegacyKeyValueFormat", "3:LegacyKeyValueFormat"},
			msgs: []string{`"ENV key=value" should be used instead of legacy "ENV key value" format`, `"LABEL key=value"`},
		},
		{
			name: "relative workdir",
			src:  "FROM scratch AS a\nWORKDIR app\nWORKDIR sub\nFROM scratch AS b\nWORKDIR /abs\nFROM b\nWORKDIR rel\n",
			want: []string{"2:WorkdirRelativePath"},
			msgs: []string{`Relative workdir "app"`},
		},
		{
			name: "undeclared ARG in FROM",
			src:  "ARG TAG=latest\nARG MY_ARCH=amd64\nFROM busybox:${TAG}${SUFFIX}\nFROM --platform=linux/${MY_ARCH} busybox${TAGG} AS b\n",
			want: []string{"3:UndefinedArgInFrom", "4:UndefinedArgInFrom"},
			msgs: []string{"FROM argument 'SUFFIX' is not declared", "FROM argument 'TAGG' is not declared (did you mean TAG?)"},
		},
		{
			name: "declared ARGs and automatic args in FROM",
			src:  "ARG BASE\nFROM --platform=$BUILDPLATFORM ${BASE:-busybox}\n",
			want: []string{},
		},
		{
			name: "default ARG value gives an invalid base",
			src:  "ARG TAG\nARG IMG=\"\"\nFROM busybox:$TAG\nFROM ${IMG}alpine\n",
			opts: LintOptions{BuildArgs: map[string]string{"TAG": "1.36"}},
			want: []string{"3:InvalidDefaultArgInFrom"},
			msgs: []string{"Default value for ARG busybox:$TAG results in empty or invalid base image name"},
		},
		{
			name: "constant FROM platform",
			src:  "FROM --platform=linux/amd64 scratch\nFROM --platform=linux/arm64 scratch AS build-arm64\n",
			want: []string{"1:FromPlatformFlagConstDisallowed"},
			msgs: []string{`FROM --platform flag should not use constant value "linux/amd64"`},
		},
		{
			name: "redundant TARGETPLATFORM",
			src:  "FROM --platform=$TARGETPLATFORM scratch\nFROM --platform=${TARGETPLATFORM} scratch AS b\nFROM --platform=$BUILDPLATFORM scratch AS c\n",
			want: []string{"1:RedundantTargetPlatform", "2:RedundantTargetPlatform"},
			msgs: []string{"predefined ${TARGETPLATFORM} in FROM"},
		},
		{
			name: "secrets in ARG and ENV",
			src: `FROM scratch
ARG GITHUB_TOKEN
ENV DB_PASSWORD=x api_key=y
ARG PUBLIC_KEY
ENV SECRET_FILE=/run/secrets/x KEYBOARD=us
ARG super_secret_thing=1
`,
			want: []string{"2:SecretsUsedInArgOrEnv", "3:SecretsUsedInArgOrEnv", "3:SecretsUsedInArgOrEnv", "6:SecretsUsedInArgOrEnv"},
			msgs: []string{`(ARG "GITHUB_TOKEN")`, `(ENV "DB_PASSWORD")`, `(ENV "api_key")`, `(ARG "super_secret_thing")`},
		},
		{
			name: "instructions that only count once per stage",
			src: `FROM scratch AS a
CMD ["a"]
ENTRYPOINT ["a"]
HEALTHCHECK NONE
COPY x /x
CMD ["b"]
ENTRYPOINT ["b"]
HEALTHCHECK CMD ["b"]
FROM a
CMD ["c"]
`,
			want: []string{"2:MultipleInstructionsDisallowed", "3:MultipleInstructionsDisallowed", "4:MultipleInstructionsDisallowed"},
			msgs: []string{"Multiple CMD instructions", "Multiple ENTRYPOINT instructions", "Multiple HEALTHCHECK instructions"},
		},
		{
			name: "EXPOSE formats",
			src:  "FROM scratch\nEXPOSE 80/TCP 443/tcp\nARG P=9000\nEXPOSE 127.0.0.1:80:80 8080:80 $P/Udp\n",
			// The parser sorts EXPOSE's words, so "$P/Udp" comes first.
			want: []string{"2:ExposeProtoCasing", "4:ExposeProtoCasing", "4:ExposeInvalidFormat", "4:ExposeInvalidFormat"},
			msgs: []string{"Defined protocol '80/TCP'", "found '127.0.0.1:80:80'", "found '8080:80'", "'9000/Udp'"},
		},
		{
			name: "files hidden by .dockerignore",
			src:  "FROM scratch AS a\nCOPY secret.txt ./README.md /\nADD https://example.com/secret.txt /\nADD logs/today.log /\nFROM scratch\nCOPY --from=a /secret.txt /\nCOPY . /\n",
			opts: LintOptions{Ignore: []string{"# comment lines are the caller's job", "/secret.txt", "logs"}},
			want: []string{"2:CopyIgnoredFile", "4:CopyIgnoredFile"},
			msgs: []string{`Attempting to Copy file "secret.txt" that is excluded by .dockerignore`, `Attempting to Add file "logs/today.log"`},
		},
		{
			name: "everything ignored hides the context root",
			src:  "FROM scratch\nCOPY . /\n",
			opts: LintOptions{Ignore: []string{"*"}},
			want: []string{"2:CopyIgnoredFile"},
		},
		{
			name: ".dockerignore exclusions turn CopyIgnoredFile off",
			src:  "FROM scratch\nCOPY secret.txt /\n",
			opts: LintOptions{Ignore: []string{"*.txt", "!keep.txt"}},
			want: []string{},
		},
		{
			name: "empty continuation line",
			src:  "FROM scratch\nCOPY a \\\n\n  /a\n",
			want: []string{"4:NoEmptyContinuation"},
		},
		{
			name: "skip directive",
			src:  "# check=skip=JSONArgsRecommended,MaintainerDeprecated\nFROM scratch\nMAINTAINER x\nCMD run\nENV a b\n",
			want: []string{"5:LegacyKeyValueFormat"},
		},
		{
			name: "skip all",
			src:  "# check=skip=all\nFROM scratch AS Bad\nCMD run\nENV a b\n",
			want: []string{},
		},
		{
			name: "a comment above an instruction skips checks for it alone",
			src:  "FROM scratch\n# check=skip=LegacyKeyValueFormat\nENV a b\nENV c d\n# check=skip=all\nFROM --platform=linux/amd64 scratch AS Other\n",
			want: []string{"4:LegacyKeyValueFormat"},
		},
		{
			name: "BUILDKIT_DOCKERFILE_CHECK replaces the directive",
			src:  "# check=skip=all\nFROM scratch\nCMD run\nENV a b\n",
			opts: LintOptions{BuildArgs: map[string]string{"BUILDKIT_DOCKERFILE_CHECK": "skip=LegacyKeyValueFormat"}},
			want: []string{"3:JSONArgsRecommended"},
		},
		{
			name: "experimental rules only on request",
			src:  "# check=experimental=InvalidDefinitionDescription\n# the version to use\nARG VERSION=1\nFROM scratch\n",
			want: []string{"3:InvalidDefinitionDescription"},
		},
		{
			name: "warnings come sorted by line",
			src:  "FROM scratch\nCOPY $UNDEF /\nENTRYPOINT x\ncopy a b\n",
			want: []string{"2:UndefinedVar", "3:JSONArgsRecommended", "4:ConsistentInstructionCasing"},
		},
		{
			name: "base image platform",
			src:  "FROM img\nFROM --platform=linux/arm64 img AS arm64\n",
			opts: LintOptions{Resolver: envResolver{arch: "arm64"}, Platform: "linux/amd64"},
			want: []string{"1:InvalidBaseImagePlatform"},
			msgs: []string{`Base image img was pulled with platform "linux/arm64", expected "linux/amd64" for current build`},
		},
		{
			name: "a target limits dispatch-time checks to the stages it needs",
			src:  "FROM scratch AS a\nCMD x\nFROM scratch AS b\nCMD y\nFROM scratch AS Unused\nCMD z\n",
			opts: LintOptions{Target: "b"},
			want: []string{"4:JSONArgsRecommended", "5:StageNameCasing"},
		},
		{
			name: "no target checks every stage",
			src:  "FROM scratch AS a\nCMD x\nFROM scratch AS b\nCMD [\"y\"]\n",
			want: []string{"2:JSONArgsRecommended"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ws, err := Lint(context.Background(), "Dockerfile", []byte(tc.src), tc.opts)
			if err != nil {
				t.Fatalf("Lint: %v (warnings %q)", err, lintKeys(ws))
			}
			if got := lintKeys(ws); !slices.Equal(got, tc.want) {
				t.Errorf("warnings %q, want %q", got, tc.want)
				for _, w := range ws {
					t.Logf("  %s", w)
				}
			}
			for _, m := range tc.msgs {
				if !slices.ContainsFunc(ws, func(w Warning) bool { return strings.Contains(w.Message, m) }) {
					t.Errorf("no warning message contains %q", m)
				}
			}
			for _, w := range ws {
				if w.File != "Dockerfile" || w.Message == "" {
					t.Errorf("incomplete warning %+v", w)
				}
				if w.URL == "" && w.RuleName != "InvalidBaseImagePlatform" {
					t.Errorf("warning without URL %+v", w)
				}
			}
		})
	}
}

func TestLintErrorDirective(t *testing.T) {
	src := "# check=skip=JSONArgsRecommended;error=true\nFROM scratch as base\nCMD x\nENV a b\n"
	ws, err := Lint(context.Background(), "Dockerfile", []byte(src), LintOptions{})
	var le *LintViolationError
	if !errors.As(err, &le) {
		t.Fatalf("error %v (%T), want *LintViolationError", err, err)
	}
	if want := []string{"FromAsCasing", "LegacyKeyValueFormat"}; !slices.Equal(le.Rules, want) {
		t.Errorf("rules %q, want %q", le.Rules, want)
	}
	if want := "lint violation found for rules: FromAsCasing, LegacyKeyValueFormat"; err.Error() != want {
		t.Errorf("message %q, want %q", err.Error(), want)
	}
	if got := lintKeys(ws); !slices.Equal(got, []string{"2:FromAsCasing", "4:LegacyKeyValueFormat"}) {
		t.Errorf("warnings %q", got)
	}

	// error=true with nothing to report is no error.
	ws, err = Lint(context.Background(), "Dockerfile", []byte("# check=error=true\nFROM scratch\nCMD [\"x\"]\n"), LintOptions{})
	if err != nil || len(ws) != 0 {
		t.Errorf("clean file with error=true: %q, %v", lintKeys(ws), err)
	}
	// Skipped rules do not make it fail either.
	_, err = Lint(context.Background(), "Dockerfile", []byte("# check=skip=all;error=true\nFROM scratch as b\n"), LintOptions{})
	if err != nil {
		t.Errorf("skip=all;error=true: %v", err)
	}
	// error=false is the default behaviour.
	ws, err = Lint(context.Background(), "Dockerfile", []byte("# check=error=false\nFROM scratch as b\n"), LintOptions{})
	if err != nil || len(ws) != 1 {
		t.Errorf("error=false: %q, %v", lintKeys(ws), err)
	}
}

func TestLintDockerfileErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		opts LintOptions
		want []string // warnings found before the error
		msg  string
		line int
	}{
		{
			name: "warnings before an unknown instruction",
			src:  "FROM scratch AS Bad\nMAINTAINER me\nBOGUS x\n",
			want: []string{"1:StageNameCasing", "2:MaintainerDeprecated"},
			msg:  "unknown instruction: BOGUS",
			line: 3,
		},
		{
			name: "bad check directive",
			src:  "# check=skip=all;fail=true\nFROM scratch\n",
			want: []string{},
			msg:  "failed to parse check options",
			line: 1,
		},
		{
			name: "empty file",
			src:  "",
			want: []string{},
			msg:  "the Dockerfile cannot be empty",
		},
		{
			name: "unknown target",
			src:  "FROM scratch AS a\nFROM scratch AS Bad\n",
			opts: LintOptions{Target: "nope"},
			want: []string{"2:StageNameCasing"},
			msg:  `target stage "nope" could not be found`,
		},
		{
			name: "COPY --from a later stage",
			src:  "FROM scratch AS a\nCMD x\nCOPY --from=b /x /x\nFROM scratch AS b\n",
			want: []string{"2:JSONArgsRecommended"},
			msg:  `cannot copy from stage "b", it needs to be defined before current stage "a"`,
			line: 3,
		},
		{
			name: "undeclared ARG leaves the FROM platform incomplete",
			src:  "ARG MY_ARCH=amd64\nFROM --platform=linux/${MYARCH} busybox\n",
			want: []string{"2:UndefinedArgInFrom"},
			msg:  "invalid platform",
			line: 2,
		},
		{
			name: "blank base",
			src:  "ARG B\nFROM $B\n",
			want: []string{"2:InvalidDefaultArgInFrom"},
			msg:  "base name ($B) should not be blank",
			line: 2,
		},
		{
			name: "bad EXPOSE after its checks",
			src:  "FROM scratch\nEXPOSE 80/TCP 1.2.3.4:x:80\n",
			// sorted: the bad word comes first
			want: []string{"2:ExposeInvalidFormat"},
			msg:  "invalid",
			line: 2,
		},
		{
			name: "resolver failure",
			src:  "FROM scratch AS Bad\nFROM busybox\n",
			opts: LintOptions{Resolver: errResolver{errors.New("no such image")}},
			want: []string{"1:StageNameCasing"},
			msg:  "no such image",
			line: 2,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ws, err := Lint(context.Background(), "Dockerfile", []byte(tc.src), tc.opts)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v (%T), want *Error", err, err)
			}
			if !strings.Contains(e.Msg, tc.msg) {
				t.Errorf("message %q lacks %q", e.Msg, tc.msg)
			}
			if tc.line != 0 && e.Loc.Line != tc.line {
				t.Errorf("line %d, want %d", e.Loc.Line, tc.line)
			}
			if got := lintKeys(ws); !slices.Equal(got, tc.want) {
				t.Errorf("warnings %q, want %q", got, tc.want)
			}
		})
	}
}

func TestLintContextCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Lint(ctx, "Dockerfile", []byte("FROM scratch\nCMD [\"x\"]\n"), LintOptions{})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %v, want context.Canceled", err)
	}
}

func TestWarningString(t *testing.T) {
	w := Warning{File: "app/Dockerfile", Line: 3, RuleName: "JSONArgsRecommended", Message: "m"}
	if got, want := w.String(), "app/Dockerfile:3: JSONArgsRecommended: m"; got != want {
		t.Errorf("%q, want %q", got, want)
	}
	w.Line = 0
	if got, want := w.String(), "app/Dockerfile: JSONArgsRecommended: m"; got != want {
		t.Errorf("%q, want %q", got, want)
	}
}
