package users_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/llm-proxy/llm-proxy/host/internal/pgtest"
	"github.com/llm-proxy/llm-proxy/host/internal/secrets"
	"github.com/llm-proxy/llm-proxy/host/internal/store"
	"github.com/llm-proxy/llm-proxy/host/internal/store/storetest"
	"github.com/llm-proxy/llm-proxy/host/internal/users"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// TestUsers runs on both databases.
func TestUsers(t *testing.T) {
	storetest.EachDatabase(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		us := users.New(st)
		now := time.Now()

		u, err := us.Create(ctx, "alice", "correct horse", users.RoleAdmin, now)
		if err != nil || u.Role != users.RoleAdmin || u.Disabled {
			t.Fatalf("%+v %v", u, err)
		}
		var hash string
		if err := st.Reader().Get(&hash, `SELECT password_hash FROM users WHERE username = 'alice'`); err != nil {
			t.Fatal(err)
		}
		if cost, err := bcrypt.Cost([]byte(hash)); err != nil || cost != 12 {
			t.Fatalf("bcrypt cost %d %v", cost, err)
		}
		for name, tc := range map[string]struct {
			user, pw, role string
			want           error
		}{
			"duplicate":      {"alice", "another pw", users.RoleViewer, users.ErrExists},
			"bad username":   {"al ice", "long enough", users.RoleViewer, users.ErrBadUsername},
			"bad role":       {"bob", "long enough", "root", users.ErrBadRole},
			"short password": {"bob", "short", users.RoleViewer, secrets.ErrPasswordTooShort},
		} {
			if _, err := us.Create(ctx, tc.user, tc.pw, tc.role, now); !errors.Is(err, tc.want) {
				t.Errorf("%s: %v, want %v", name, err, tc.want)
			}
		}

		if got, err := us.Authenticate(ctx, "alice", "correct horse"); err != nil || got.Username != "alice" {
			t.Fatalf("login: %v %v", got, err)
		}
		// Wrong password and unknown user give the same answer.
		for _, c := range [][2]string{{"alice", "wrong password"}, {"nobody", "correct horse"}} {
			if _, err := us.Authenticate(ctx, c[0], c[1]); !errors.Is(err, users.ErrBadLogin) || err.Error() != users.ErrBadLogin.Error() {
				t.Errorf("%v: %v", c, err)
			}
		}
		if err := us.SetPassword(ctx, "alice", "new password!", now.Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		if _, err := us.Authenticate(ctx, "alice", "correct horse"); !errors.Is(err, users.ErrBadLogin) {
			t.Fatal("old password still works")
		}
		if got, _ := us.Get(ctx, "alice"); !got.PasswordChangedAt.After(got.CreatedAt) {
			t.Fatalf("password_changed_at not moved: %+v", got)
		}
		// The only enabled admin can be neither disabled, demoted nor removed.
		if err := us.SetDisabled(ctx, "alice", true, now); !errors.Is(err, users.ErrLastAdmin) {
			t.Fatalf("disabling the last admin: %v", err)
		}
		if err := us.SetRole(ctx, "alice", users.RoleViewer, now); !errors.Is(err, users.ErrLastAdmin) {
			t.Fatalf("demoting the last admin: %v", err)
		}
		if err := us.Delete(ctx, "alice"); !errors.Is(err, users.ErrLastAdmin) {
			t.Fatalf("removing the last admin: %v", err)
		}
		if got, _ := us.Get(ctx, "alice"); got == nil || got.Disabled || got.Role != users.RoleAdmin {
			t.Fatalf("a refused change was kept: %+v", got)
		}
		carol, err := us.Create(ctx, "carol", "long enough", users.RoleViewer, now)
		if err != nil {
			t.Fatal(err)
		}
		if err := us.SetRole(ctx, "carol", users.RoleAdmin, now); err != nil {
			t.Fatal(err)
		}
		if got, err := us.GetByID(ctx, carol.ID); err != nil || got.Username != "carol" || got.Role != users.RoleAdmin {
			t.Fatalf("by id: %+v %v", got, err)
		}
		if err := us.SetDisabled(ctx, "alice", true, now); err != nil {
			t.Fatal(err)
		}
		if _, err := us.Authenticate(ctx, "alice", "new password!"); !errors.Is(err, users.ErrBadLogin) {
			t.Fatal("a disabled user logged in")
		}
		if err := us.SetDisabled(ctx, "nobody", true, now); !errors.Is(err, users.ErrNotFound) {
			t.Fatal(err)
		}
		// With alice disabled, carol is the last admin; a viewer goes freely.
		if err := us.Delete(ctx, "carol"); !errors.Is(err, users.ErrLastAdmin) {
			t.Fatalf("removing the last admin: %v", err)
		}
		if _, err := us.Create(ctx, "dave", "long enough", users.RoleViewer, now); err != nil {
			t.Fatal(err)
		}
		if err := us.Delete(ctx, "dave"); err != nil {
			t.Fatal(err)
		}
		if _, err := us.Get(ctx, "dave"); !errors.Is(err, users.ErrNotFound) {
			t.Fatalf("removed user still there: %v", err)
		}
		if _, err := us.GetByID(ctx, "usr_nope"); !errors.Is(err, users.ErrNotFound) {
			t.Fatal(err)
		}
	})
}

// TestLastAdminAcrossReplicas: two replicas (two stores on one database)
// each demote or disable one of the last two admins at the same moment,
// many times over: one of them must always be refused.
func TestLastAdminAcrossReplicas(t *testing.T) {
	storetest.EachShared(t, func(t *testing.T, connect func() *store.Store) {
		ctx := context.Background()
		a, b := users.New(connect()), users.New(connect())
		now := time.Now()
		for _, n := range []string{"ann", "bob"} {
			if _, err := a.Create(ctx, n, "a long password", users.RoleAdmin, now); err != nil {
				t.Fatal(err)
			}
		}
		for round := range 10 {
			errs := make(chan error, 2)
			go func() { errs <- a.SetRole(ctx, "ann", users.RoleViewer, now) }()
			go func() { errs <- b.SetDisabled(ctx, "bob", true, now) }()
			e1, e2 := <-errs, <-errs
			refused := 0
			for _, err := range []error{e1, e2} {
				switch {
				case errors.Is(err, users.ErrLastAdmin):
					refused++
				case err != nil:
					t.Fatal(err)
				}
			}
			if refused != 1 {
				t.Fatalf("round %d: %d of the two changes refused, want exactly 1", round, refused)
			}
			// Both admins again.
			if err := a.SetRole(ctx, "ann", users.RoleAdmin, now); err != nil {
				t.Fatal(err)
			}
			if err := a.SetDisabled(ctx, "bob", false, now); err != nil {
				t.Fatal(err)
			}
		}
	})
}
