"""Notes kept in a SQL database through an outgoing connection (examples/shoal.yaml
declares `notes-db`, an SQLite database in memory; point it at PostgreSQL or MariaDB by
changing its url, no code change)."""

from contextlib import closing

from zato.server.service import Service

SCHEMA = 'create table if not exists notes (id integer primary key, text text not null, created text)'


class AddNote(Service):
    """POST /notes {"text": "..."} stores a note and answers with its id."""
    name = 'notes.add'

    class SimpleIO:
        input_required = 'text',
        output_required = 'id',
        response_elem = None

    def handle(self):
        db = self.out.sql.get('notes-db')
        with closing(db.session()) as session:
            session.execute(SCHEMA)
            session.execute('insert into notes (text, created) values (:text, :created)',
                            {'text': self.request.input.text, 'created': self.time.utcnow()})
            note_id = session.execute('select max(id) from notes').scalar()
            session.commit()
        self.response.payload.id = note_id


class ListNotes(Service):
    """GET /notes lists every note."""
    name = 'notes.list'

    def handle(self):
        db = self.out.sql.get('notes-db')
        db.execute(SCHEMA)
        rows = db.execute('select id, text, created from notes order by id').fetchall()
        self.response.payload = {'notes': [row._asdict() for row in rows]}
