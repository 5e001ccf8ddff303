"""SQLAlchemy 2 (psycopg 3 dialect): metadata create_all, core insert with
RETURNING, an ORM session round trip, drop_all."""

from sqlalchemy import ForeignKey, String, create_engine, func, insert, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from common import err, out


class Base(DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = "sa_author"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    books: Mapped[list["Book"]] = relationship(back_populates="author")


class Book(Base):
    __tablename__ = "sa_book"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(100))
    author_id: Mapped[int] = mapped_column(ForeignKey("sa_author.id"))
    author: Mapped[Author] = relationship(back_populates="books")


engine = create_engine("postgresql+psycopg://")
try:
    Base.metadata.create_all(engine)
    out("create_all", "ok")
    with engine.begin() as c:
        r = c.execute(insert(Author).returning(Author.id), [{"name": "Ada"}, {"name": "Grace"}])
        out("core insert returning", sorted(r.scalars().all()))
    with Session(engine) as s:
        ada = s.scalars(select(Author).where(Author.name == "Ada")).one()
        ada.books.append(Book(title="Notes"))
        ada.books.append(Book(title="Engines"))
        s.commit()
        n = s.scalar(select(func.count()).select_from(Book))
        out("orm", ada.name, n, sorted(b.title for b in ada.books))
        ada.name = "Ada L."
        s.commit()
        s.delete(s.scalars(select(Book).where(Book.title == "Notes")).one())
        s.commit()
        out("orm after", s.scalar(select(Author.name).where(Author.id == ada.id)), s.scalar(select(func.count()).select_from(Book)))
    with engine.connect() as c:
        out("join", c.execute(select(Author.name, Book.title).join(Book)).all())
except DBAPIError as e:
    err("sqlalchemy", e.orig)
finally:
    try:
        Base.metadata.drop_all(engine)
        out("drop_all", "ok")
    except DBAPIError as e:
        err("drop_all", e.orig)
