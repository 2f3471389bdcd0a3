package geoserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cowbird-go/cowbird/handlers"
)

// StepKind names one step of a job, as the original names its Celery task.
type StepKind string

// The steps of the original's GeoServer tasks (cowbird.md §5.4).
const (
	StepCreateWorkspace   StepKind = "create_workspace"
	StepCreateDatastore   StepKind = "create_datastore"
	StepRemoveWorkspace   StepKind = "remove_workspace"
	StepValidateShapefile StepKind = "validate_shapefile"
	StepPublishShapefile  StepKind = "publish_shapefile"
	StepRemoveShapefile   StepKind = "remove_shapefile"
)

// Step is one unit of GeoServer work on a workspace, and a shapefile for the
// shapefile steps.
type Step struct {
	Kind      StepKind `json:"kind"`
	Workspace string   `json:"workspace"`
	Shapefile string   `json:"shapefile,omitempty"`
}

// Job is a persisted chain of steps: each runs once the previous one
// succeeded, and a final failure stops the chain.
type Job struct {
	ID    string `json:"id"`
	Steps []Step `json:"steps"`
	// Next is the index of the step to run.
	Next int `json:"next"`
	// Retries counts the retries of step Next so far.
	Retries int `json:"retries"`
	// Failed is set when the chain stopped on Err.
	Failed  bool      `json:"failed,omitempty"`
	Err     string    `json:"error,omitempty"`
	Created time.Time `json:"created"`
}

// key orders jobs: the jobs of one workspace (or of one shapefile) run one
// after the other, in the order they were queued.
func (j *Job) key() string {
	s := j.Steps[0]
	if s.Shapefile == "" {
		return s.Workspace
	}
	return s.Workspace + "/" + s.Shapefile
}

// JobStore persists jobs; *store.DB implements it.
type JobStore interface {
	// PutJob stores data under id, replacing what was there.
	PutJob(ctx context.Context, id string, data []byte) error
	// DeleteJob removes job id, if any.
	DeleteJob(ctx context.Context, id string) error
	// Jobs returns every stored job's data, sorted by id.
	Jobs(ctx context.Context) ([][]byte, error)
}

// Retry policy defaults (cowbird.md §5.4); the backoff's are those of
// handlers.Backoff (1 s doubling up to 600 s, full jitter).
const (
	DefaultMaxRetries         = 15
	DefaultMaxValidateRetries = 8
	// DefaultKeepFailed is how many failed jobs are kept for Status.
	DefaultKeepFailed = 100
)

// JobsOptions configures Jobs; zero fields take the defaults above.
type JobsOptions struct {
	// Backoff spaces the retries of a step: retry n waits a random time up
	// to min(Max, Base·2ⁿ); its zero value is the original's policy.
	Backoff handlers.Backoff
	// MaxRetries bounds the retries of a GeoServer step on retryable errors.
	MaxRetries int
	// MaxValidateRetries bounds the retries of validate_shapefile while
	// companion files are missing.
	MaxValidateRetries int
	// KeepFailed bounds how many failed jobs are kept (oldest dropped).
	KeepFailed int
	// Log receives job failures; nil discards.
	Log *logrus.Entry
}

// JobsStatus describes the jobs for operators.
type JobsStatus struct {
	// Pending lists the jobs queued or running, by key then queue order.
	Pending []Job `json:"pending"`
	// Failed lists the kept failed jobs, oldest first.
	Failed []Job `json:"failed"`
	// FailedTotal counts the jobs failed since this process started.
	FailedTotal int64 `json:"failed_total"`
}

// Jobs runs GeoServer work durably: each job is stored before Enqueue
// returns, retried with backoff, and resumed by Run after a restart.
type Jobs struct {
	db   JobStore
	opts JobsOptions
	log  *logrus.Entry
	seq  atomic.Uint64

	mu          sync.Mutex
	exec        func(ctx context.Context, s Step) error
	queues      map[string][]*Job // pending jobs by key, in order
	busy        map[string]bool   // keys with a worker
	failed      []Job
	failedTotal int64
	kick        chan struct{}
	changed     chan struct{} // closed and replaced on every change
}

// NewJobs returns a job runner persisting into db. A Handler made with New
// runs its steps; call Run to execute them.
func NewJobs(db JobStore, opts JobsOptions) *Jobs {
	if opts.MaxRetries <= 0 {
		opts.MaxRetries = DefaultMaxRetries
	}
	if opts.MaxValidateRetries <= 0 {
		opts.MaxValidateRetries = DefaultMaxValidateRetries
	}
	if opts.KeepFailed <= 0 {
		opts.KeepFailed = DefaultKeepFailed
	}
	log := opts.Log
	if log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		log = logrus.NewEntry(l)
	}
	return &Jobs{db: db, opts: opts, log: log, queues: map[string][]*Job{}, busy: map[string]bool{},
		kick: make(chan struct{}, 1), changed: make(chan struct{})}
}

// bind sets the step executor; New calls it.
func (j *Jobs) bind(exec func(ctx context.Context, s Step) error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.exec = exec
}

// Enqueue stores a job made of steps and queues it; it returns once the job
// is durable.
func (j *Jobs) Enqueue(ctx context.Context, steps ...Step) error {
	if len(steps) == 0 {
		return errors.New("enqueue job: no steps")
	}
	job := &Job{
		ID:      fmt.Sprintf("%016x-%08x", time.Now().UnixNano(), j.seq.Add(1)),
		Steps:   steps,
		Created: time.Now().UTC(),
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.put(ctx, job); err != nil {
		return fmt.Errorf("enqueue %s %s: %w", steps[0].Kind, job.key(), err)
	}
	j.queues[job.key()] = append(j.queues[job.key()], job)
	j.notifyLocked()
	select {
	case j.kick <- struct{}{}:
	default:
	}
	return nil
}

func (j *Jobs) put(ctx context.Context, job *Job) error {
	data, err := json.Marshal(job)
	if err != nil {
		return err
	}
	return j.db.PutJob(ctx, job.ID, data)
}

// Run loads the stored jobs, then runs them and every job enqueued later
// until ctx is done. Jobs not finished then stay stored for the next Run.
func (j *Jobs) Run(ctx context.Context) error {
	if err := j.load(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		j.mu.Lock()
		for key, q := range j.queues {
			if len(q) > 0 && !j.busy[key] {
				j.busy[key] = true
				wg.Go(func() { j.work(ctx, key) })
			}
		}
		j.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil
		case <-j.kick:
		}
	}
}

// load replaces the in-memory queues with the stored jobs.
func (j *Jobs) load(ctx context.Context) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.exec == nil {
		return errors.New("run jobs: no handler bound (create the Geoserver handler with these Jobs)")
	}
	stored, err := j.db.Jobs(ctx)
	if err != nil {
		return fmt.Errorf("run jobs: %w", err)
	}
	clear(j.queues)
	j.failed = j.failed[:0]
	for _, data := range stored {
		job := new(Job)
		if err := json.Unmarshal(data, job); err != nil || len(job.Steps) == 0 {
			j.log.WithError(err).Warnf("skipping unreadable stored job %.80q", data)
			continue
		}
		if job.Failed {
			j.failed = append(j.failed, *job)
			continue
		}
		j.queues[job.key()] = append(j.queues[job.key()], job)
	}
	j.notifyLocked()
	return nil
}

// work runs the jobs of key in order until none is left or ctx is done.
func (j *Jobs) work(ctx context.Context, key string) {
	for {
		j.mu.Lock()
		q := j.queues[key]
		if len(q) == 0 || ctx.Err() != nil {
			delete(j.busy, key)
			j.mu.Unlock()
			return
		}
		job, exec := q[0], j.exec
		j.mu.Unlock()
		if !j.runJob(ctx, exec, job) {
			j.mu.Lock()
			delete(j.busy, key)
			j.mu.Unlock()
			return
		}
		j.mu.Lock()
		j.queues[key] = j.queues[key][1:]
		if len(j.queues[key]) == 0 {
			delete(j.queues, key)
		}
		j.notifyLocked()
		j.mu.Unlock()
	}
}

// runJob runs job's remaining steps and reports whether it is over
// (finished or failed); false means ctx ended first. It works on a copy and
// publishes each change under the lock, for Status.
func (j *Jobs) runJob(ctx context.Context, exec func(context.Context, Step) error, job *Job) bool {
	j.mu.Lock()
	cur := *job
	j.mu.Unlock()
	for cur.Next < len(cur.Steps) {
		step := cur.Steps[cur.Next]
		err := exec(ctx, step)
		if ctx.Err() != nil {
			return false
		}
		switch {
		case err == nil:
			cur.Next++
			cur.Retries = 0
			if cur.Next < len(cur.Steps) {
				j.save(ctx, job, cur)
			}
		case cur.Retries < j.maxRetries(step, err):
			delay := j.opts.Backoff.Delay(cur.Retries)
			cur.Retries++
			j.log.WithError(err).WithFields(logrus.Fields{"job": cur.ID, "step": step.Kind, "retry": cur.Retries}).
				Debugf("retrying in %s", delay)
			j.save(ctx, job, cur)
			if !sleepCtx(ctx, delay) {
				return false
			}
		default:
			j.fail(ctx, job, cur, step, err)
			return true
		}
	}
	if err := j.db.DeleteJob(ctx, cur.ID); err != nil && ctx.Err() == nil {
		j.log.WithError(err).WithField("job", cur.ID).Warn("delete finished job")
	}
	return true
}

// save persists cur as job's new state and publishes it.
func (j *Jobs) save(ctx context.Context, job *Job, cur Job) {
	if err := j.put(ctx, &cur); err != nil && ctx.Err() == nil {
		j.log.WithError(err).WithField("job", cur.ID).Warn("persist job progress")
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	*job = cur
	j.notifyLocked()
}

// maxRetries is how often step may be retried after err: 0 for a final
// error (a GeoserverError, a bad argument).
func (j *Jobs) maxRetries(step Step, err error) int {
	switch {
	case step.Kind == StepValidateShapefile && errors.Is(err, errShapefileIncomplete):
		return j.opts.MaxValidateRetries
	case step.Kind != StepValidateShapefile && handlers.IsTransient(err):
		return j.opts.MaxRetries
	}
	return 0
}

// fail records job as failed: logged, counted, kept for Status.
func (j *Jobs) fail(ctx context.Context, job *Job, cur Job, step Step, err error) {
	cur.Failed, cur.Err = true, err.Error()
	j.log.WithError(err).WithFields(logrus.Fields{"job": cur.ID, "step": step.Kind, "user": step.Workspace,
		"retries": cur.Retries}).Error("geoserver job failed, chain stopped")
	if perr := j.put(ctx, &cur); perr != nil {
		j.log.WithError(perr).WithField("job", cur.ID).Warn("persist failed job")
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	*job = cur
	j.failedTotal++
	j.failed = append(j.failed, cur)
	j.notifyLocked()
	for len(j.failed) > j.opts.KeepFailed {
		if derr := j.db.DeleteJob(ctx, j.failed[0].ID); derr != nil {
			j.log.WithError(derr).WithField("job", j.failed[0].ID).Warn("drop old failed job")
		}
		j.failed = j.failed[1:]
	}
}

// Status returns the pending count and the failed jobs.
func (j *Jobs) Status() JobsStatus {
	j.mu.Lock()
	defer j.mu.Unlock()
	st := JobsStatus{Failed: append([]Job(nil), j.failed...), FailedTotal: j.failedTotal}
	for _, key := range slices.Sorted(maps.Keys(j.queues)) {
		for _, job := range j.queues[key] {
			st.Pending = append(st.Pending, *job)
		}
	}
	return st
}

// Wait blocks until no job is pending or ctx is done.
func (j *Jobs) Wait(ctx context.Context) error {
	for {
		j.mu.Lock()
		ch, idle := j.changed, len(j.queues) == 0
		j.mu.Unlock()
		if idle {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wait for jobs: %w", ctx.Err())
		}
	}
}

// changes returns a channel closed at the next change of the jobs' state.
func (j *Jobs) changes() <-chan struct{} {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.changed
}

func (j *Jobs) notifyLocked() {
	close(j.changed)
	j.changed = make(chan struct{})
}

// sleepCtx waits d and reports whether ctx is still live.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
